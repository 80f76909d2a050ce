from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

ROUNDS: int
SMALL_N: int
SMALL_ROUNDS: int
TABLE_N: int
TABLE_SLOTS: int
MODES: Dict[str, int]

def _simd(level: Optional[str] = ...) -> str: ...
def domain(n: int) -> Tuple[int, int]: ...
def round_keys(n: int, key: Tuple[int, int], sid: int = ..., epoch: int = ...,
               rounds: int = ...) -> npt.NDArray[np.uint64]: ...
def permutation(n: int, key: Tuple[int, int], sid: int = ..., epoch: int = ...,
                start: int = ..., count: Optional[int] = ..., rounds: int = ...,
                wide: bool = ...) -> npt.NDArray[np.int64]: ...
def at(n: int, key: Tuple[int, int], positions: npt.ArrayLike, sid: int = ...,
       epoch: int = ..., rounds: int = ..., wide: bool = ...,
       inverse: bool = ...) -> npt.NDArray[np.uint64]: ...
def batch_rows(n: int, b: int, step: int, key: Tuple[int, int], sid: int = ...,
               mode: str = ..., start: int = ..., count: Optional[int] = ...,
               rounds: int = ..., wide: bool = ...) -> npt.NDArray[np.int64]: ...
def first_collision(n: int, key: Tuple[int, int], sid: int = ..., epoch: int = ...,
                    rounds: int = ..., wide: bool = ...) -> int: ...
def failing_sizes(n_lo: int, n_hi: int, key: Tuple[int, int], sid: int = ...,
                  epoch: int = ..., rounds: int = ..., wide: bool = ...) -> List[int]: ...
def position_counts(n: int, key: Tuple[int, int], sid: int = ..., epoch: int = ...,
                    nepochs: int = ..., rounds: int = ...,
                    wide: bool = ...) -> npt.NDArray[np.int64]: ...
