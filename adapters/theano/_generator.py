"""The generator variable: ``generator``, ``GeneratorOp`` (PyMC3's ``pm.generator``).

Items come from an ``mbcore.GeneratorAdapter`` (which checks and converts
them); the Op pulls the next one on every evaluation.
"""
import itertools
from copy import copy

import numpy as np

from mbcore import GeneratorAdapter

from .._theano_compat import import_theano

theano = import_theano()

import theano.tensor as tt  # noqa: E402
from theano.graph.basic import Apply  # noqa: E402
from theano.graph.op import Op  # noqa: E402

__all__ = ["generator", "GeneratorOp", "GeneratorVariable", "GeneratorExhausted"]


class GeneratorExhausted(StopIteration):
    """The generator behind a ``generator`` variable has no more items."""


class _Source:
    """The GeneratorAdapter (and default) behind a GeneratorOp; compared by
    identity, so two generator variables never merge, and replaced in place
    by ``set_gen``, so the Op's props never change."""

    def __init__(self, adapter, dtype, ndim):
        self.dtype = dtype
        self.ndim = ndim
        self.gen = adapter
        self.default = None


def _adapt(gen):
    """A core GeneratorAdapter of ``gen`` (itself if it is one) and the dtype
    of its variable (floatX for float items, PyMC3's rule)."""
    adapter = gen if isinstance(gen, GeneratorAdapter) else GeneratorAdapter(gen)
    return adapter, np.dtype(adapter.tensortype.dtype)


class GeneratorOp(Op):
    """An Op without inputs whose every evaluation yields the next item of a
    Python generator (or its default once the generator is exhausted):
    PyMC3's ``pymc3.theanof.GeneratorOp``.

    ``GeneratorOp(gen, default=None)()`` is the variable (a
    ``GeneratorVariable``, with ``set_gen`` and ``set_default``).

    Parameters
    ----------
    gen : iterator of array_like, or GeneratorAdapter
        A generator or any iterator (PyMC3's ``GeneratorAdapter`` included)
        or an ``mbcore.GeneratorAdapter``; its first item decides the dtype
        (float items are cast to floatX) and ndim, and is the test value.
    default : array_like, optional
        Yielded once ``gen`` is exhausted; without it an exhausted generator
        raises ``GeneratorExhausted`` (a StopIteration) naming the variable.

    The generator is the Op's one piece of mutable state, by nature; the Op
    is never constant-folded, and two generator variables never merge (their
    sources compare by identity).  Items are copied and cast to the
    variable's dtype, so downstream in-place Ops cannot write into the
    generator's arrays; an item of another ndim, or whose values the first
    item's dtype cannot hold, raises (``mbcore.GeneratorAdapter``).
    """

    __props__ = ("source",)

    def __init__(self, gen, default=None):
        super().__init__()
        adapter, dtype = _adapt(gen)
        self.source = _Source(adapter, dtype, adapter.ndim)
        self.set_default(default)

    @property
    def generator(self):
        """The ``mbcore.GeneratorAdapter`` items come from."""
        return self.source.gen

    @property
    def default(self):
        return self.source.default

    def make_node(self, *inputs):
        if inputs:
            raise TypeError(f"GeneratorOp takes no inputs, got {len(inputs)}")
        src = self.source
        out = GeneratorVariable(self, tt.TensorType(src.dtype, (False,) * src.ndim))
        out.tag.test_value = np.array(src.gen.test_value, dtype=src.dtype)
        return Apply(self, [], [out])

    # The test value is the first item, set by make_node: computing one by
    # evaluating the Op would consume an item.
    __call__ = theano.config.change_flags(compute_test_value="off")(Op.__call__)

    def perform(self, node, inputs, outputs, params=None):
        src = self.source
        try:
            item = next(src.gen)
        except StopIteration:
            if src.default is None:
                raise GeneratorExhausted(
                    f"the generator of variable {node.outputs[0].name!r} is exhausted; "
                    f"give it a new one with set_gen(gen) or a value to yield from now "
                    f"on with set_default(value)") from None
            item = src.default
        except (TypeError, ValueError) as e:
            if type(e) not in (TypeError, ValueError):
                raise
            # An item the adapter refused (ndim, values): say whose it was.
            raise type(e)(f"the generator of variable {node.outputs[0].name!r}: {e}") \
                from None
        # The adapter yields exact items of the first item's dtype; float
        # items become floatX here, as PyMC3 casts them.
        outputs[0][0] = np.array(item, dtype=src.dtype)

    def do_constant_folding(self, fgraph, node):
        return False

    def set_gen(self, gen):
        """Pull items from ``gen`` from now on; it must yield the same type
        (ValueError otherwise, and the old generator stays)."""
        adapter, dtype = _adapt(gen)
        src = self.source
        if dtype != src.dtype or adapter.ndim != src.ndim:
            raise ValueError(f"the new generator yields {dtype} items with ndim="
                             f"{adapter.ndim}; the variable has type "
                             f"{tt.TensorType(src.dtype, (False,) * src.ndim)}")
        src.gen = adapter

    def set_default(self, value):
        """Yield ``value`` once the generator is exhausted (None: raise).  It
        must have the items' ndim and values their dtype holds exactly
        (ValueError otherwise)."""
        src = self.source
        if value is None:
            src.default = None
            return
        src.default = np.array(src.gen.convert(value, "default"), dtype=src.dtype)


class GeneratorVariable(tt.TensorVariable):
    """The output of a ``GeneratorOp``; see :func:`generator`.  ``op`` (also
    ``gen_op``) is the Op, as on PyMC3's ``GenTensorVariable``."""

    def __init__(self, op, type, name=None):
        super().__init__(type, None, None, name)
        self.gen_op = op

    @property
    def op(self):
        return self.gen_op

    def set_gen(self, gen):
        """Pull items from ``gen`` from now on; it must yield the same type."""
        self.gen_op.set_gen(gen)

    def set_default(self, value):
        """Yield ``value`` once the generator is exhausted (None: raise)."""
        self.gen_op.set_default(value)

    def clone(self):
        cp = type(self)(self.gen_op, self.type, self.name)
        cp.tag = copy(self.tag)
        return cp


_generator_names = itertools.count()


def generator(gen, default=None, name=None):
    """A variable whose every evaluation pulls the next item of ``gen``
    (PyMC3's ``pm.generator``): ``GeneratorOp(gen, default)()``, named.

    Parameters
    ----------
    gen : iterator of array_like, or GeneratorAdapter
        Items of one dtype and ndim (the first one decides; float items are
        cast to floatX).  Its first item is pulled now (the test value) and is
        also the first item yielded.
    default : array_like, optional
        Yielded once ``gen`` is exhausted; without it an exhausted generator
        raises ``GeneratorExhausted`` (a StopIteration) naming the variable.
    name : str, optional

    Returns
    -------
    GeneratorVariable
        With ``set_gen(gen)`` and ``set_default(value)``.

    Examples
    --------
    >>> import numpy as np
    >>> from mbcore.adapters.theano import generator
    >>> v = generator(np.full(2, i) for i in range(3))
    >>> f = theano.function([], v * 1)
    >>> [int(f()[0]) for _ in range(3)]
    [0, 1, 2]
    """
    var = GeneratorOp(gen, default)()
    var.name = name if name is not None else f"generator_{next(_generator_names)}"
    return var
