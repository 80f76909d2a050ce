"""The C code of ``MinibatchOp``: ``minibatch_op.c``, and each node's call of it.

``minibatch_op.c`` holds the work (bind the spec to the data, draw into the
outputs, advance the state); each node only declares its cache and calls
``mb_minibatch_draw`` with its variables.  ``C_VERSION``, the Op's
``c_code_cache_version``, is a hash of all of it, so any change of the C
recompiles: Theano reuses a cached module whose version matches without
reading its source.  No spec value is in the source (the spec reaches the C
code as the node's params), so every node with the same input types shares
one compiled module.
"""
import hashlib
import pathlib

__all__ = ["C_SUPPORT", "C_VERSION", "version", "c_code", "struct_support", "struct_init",
           "struct_cleanup"]

C_SUPPORT = (pathlib.Path(__file__).resolve().parent / "minibatch_op.c").read_text()

STRUCT = """
PyObject *mb_bound_{name};      /* spec.bind(*data), or NULL */
mb_input mb_inputs_{name}[{m}];
"""

INIT = "mb_inputs_init(&mb_bound_{name}, mb_inputs_{name}, {m});\n"

CLEANUP = "mb_inputs_clear(&mb_bound_{name}, mb_inputs_{name}, {m});\n"

CALL = """
{{
    PyArrayObject *mb_data[{m}] = {{{data}}};
    PyArrayObject **mb_batches[{m}] = {{{batches}}};
    if (mb_minibatch_draw((PyObject *){params}, &mb_bound_{name}, mb_inputs_{name}, {m},
                          {state}, mb_data, mb_batches, &{next})) {{
        {fail}
    }}
}}
"""


def version(support):
    """The cache version of the C code with this support code: 48 bits of a
    sha256 of it and of the node templates, as the tuple of ints Theano asks
    for."""
    text = "".join((support, STRUCT, INIT, CLEANUP, CALL))
    return (int(hashlib.sha256(text.encode()).hexdigest()[:12], 16),)


C_VERSION = version(C_SUPPORT)


def struct_support(name, m):
    return STRUCT.format(name=name, m=m)


def struct_init(name, m):
    return INIT.format(name=name, m=m)


def struct_cleanup(name, m):
    return CLEANUP.format(name=name, m=m)


def c_code(name, inputs, outputs, sub):
    """A node's code: ``inputs`` (state, data...), ``outputs`` (next state,
    batches...) are the C names Theano gives its variables."""
    (state, *data), (nxt, *batches) = inputs, outputs
    return CALL.format(name=name, m=len(data), data=", ".join(data),
                       batches=", ".join(f"&{b}" for b in batches), params=sub["params"],
                       state=state, next=nxt, fail=sub["fail"])
