# The process's vector level: C-level only (_simd.pxd); mbcore._kernels._hooks._simd reads and sets it.
