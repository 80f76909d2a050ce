"""The JAX implementations of ``MinibatchDraw`` and ``MinibatchIndices``:
``jax.pure_callback`` into the core (when JAX is installed)."""
import numpy as np
from pytensor.graph.basic import Constant

from ._op import MinibatchDraw, MinibatchIndices
from ._source_op import SourceDraw
from ._step import next_step


_JAX_EXIT_HOOK = []


def _jax_drain_at_exit(jax):
    """Let JAX finish its callbacks and drop its compiled functions (which
    hold the host callbacks) before the interpreter finalizes: without this,
    a process that ran a host callback aborted at exit in about one run of
    three ("PyGILState_Release: thread state ... must be current"; jax
    0.10.2, CPU), none of twelve with it."""
    if not _JAX_EXIT_HOOK:
        import atexit

        def drain():
            jax.effects_barrier()
            jax.clear_caches()

        atexit.register(drain)
        _JAX_EXIT_HOOK.append(drain)


def _register_jax():
    try:
        import jax
        from pytensor.link.jax.dispatch import jax_funcify
    except ImportError:
        return

    @jax_funcify.register(MinibatchDraw)
    def jax_funcify_MinibatchDraw(op, node, **kwargs):
        """A host callback into the core (``jax.pure_callback``): the step and
        the data that are not constants go to the host, the batches come
        back.  Constant data (NumPy arrays given to ``Minibatch``) stay on the
        host, read in place.  The step is an explicit input and output, so
        the function stays pure."""
        _jax_drain_at_exit(jax)
        spec = op.spec
        inputs_ = node.inputs
        n_data = len(inputs_) - 1
        consts = {i: np.asarray(v.data) for i, v in enumerate(inputs_[:-1])
                  if isinstance(v, Constant)}
        passed = [i for i in range(n_data) if i not in consts]
        shapes_out = [(spec.batch_shape(np.shape(consts[i])) if i in consts else None,
                       np.dtype(inputs_[i].type.dtype)) for i in range(n_data)]

        def host(step, *moved):
            t = next_step(step)
            data = [None] * n_data
            for i, c in consts.items():
                data[i] = c
            for i, d in zip(passed, moved):
                data[i] = np.asarray(d)
            return (*spec.draw(t, *data), np.array(t + 1, dtype=np.int64))

        def minibatch_draw(*inputs):
            shapes = [jax.ShapeDtypeStruct(shape if shape is not None
                                           else spec.batch_shape(inputs[i].shape), dtype)
                      for i, (shape, dtype) in enumerate(shapes_out)]
            shapes.append(jax.ShapeDtypeStruct((), np.int64))
            return jax.pure_callback(host, tuple(shapes), inputs[-1],
                                     *[inputs[i] for i in passed])

        return minibatch_draw

    @jax_funcify.register(SourceDraw)
    def jax_funcify_SourceDraw(op, node, **kwargs):
        """A host callback into the core (``jax.pure_callback``): the step
        and the data inputs go to the host, where the Op's sources are read
        (its ``perform``), and the batches come back."""
        _jax_drain_at_exit(jax)
        perform = op.perform
        n_out = len(node.outputs)
        shapes = tuple(jax.ShapeDtypeStruct(o.type.shape, np.dtype(o.type.dtype))
                       for o in node.outputs)
        if any(None in s.shape for s in shapes):
            raise NotImplementedError(
                f"{op} on the JAX backend needs batches of static shape; data inputs of "
                f"unknown shape give {[o.type for o in node.outputs]}: run it on the C, "
                f"Python or Numba backend")

        def host(*inputs):
            storage = [[None] for _ in range(n_out)]
            perform(node, [np.asarray(v) for v in inputs], storage)
            return tuple(s[0] for s in storage)

        def source_draw(*inputs):
            return jax.pure_callback(host, shapes, *inputs)

        return source_draw

    @jax_funcify.register(MinibatchIndices)
    def jax_funcify_MinibatchIndices(op, node, **kwargs):
        """The gradient's indices, by a host callback into the core."""
        _jax_drain_at_exit(jax)
        shapes = tuple(jax.ShapeDtypeStruct(o.type.shape, np.int64) for o in node.outputs)
        perform = op.perform
        n_out = len(node.outputs)

        def host(shape, step):
            storage = [[None] for _ in range(n_out)]
            perform(node, [np.asarray(shape), np.asarray(step)], storage)
            return tuple(s[0] for s in storage)

        def minibatch_indices(shape, step):
            res = jax.pure_callback(host, shapes, shape, step)
            return res[0] if n_out == 1 else res

        return minibatch_indices


_register_jax()
