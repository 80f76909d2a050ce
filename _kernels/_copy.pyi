# The copy loops of a gather: C-level only (_copy.pxd).
