# The plan and its walk: C-level only (_plan.pxd).
