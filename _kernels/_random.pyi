from typing import Literal, Sequence

import numpy as np
import numpy.typing as npt

def philox4x64_raw(counter: Sequence[int], key: Sequence[int],
                   nblocks: int) -> npt.NDArray[np.uint64]: ...
def draw_indices(key: Sequence[int], sid: int, step: int, n: int, m: int,
                 replace: bool = ...,
                 method: Literal["auto", "dense", "sparse"] = ...) -> npt.NDArray[np.int64]: ...
