# The dispatcher's state and choices: C-level only (_dispatch.pxd); mbcore._kernels._hooks reads and forces them.
