# The process's worker pool: C-level only (_pool.pxd).
