"""Graph adapters over the mbcore core (installed as ``mbcore.adapters``).

``mbcore.adapters.theano``: a drop-in ``Minibatch`` for PyMC3 3 / Theano models.
"""
