"""The PyMC tests in this directory run on mbcore's batches: ``pm.Minibatch``
is the adapter's while they run, and the batches it builds are drawn by
mbcore's Op."""
import numpy as np
import pymc as pm
import pytensor

from mbcore import Minibatch as CoreMinibatch
from mbcore.adapters.pytensor import Minibatch, minibatch_step


def test_pm_minibatch_is_the_adapter():
    assert pm.Minibatch is Minibatch


def test_pm_minibatch_draws_the_cores_batches():
    data = np.arange(1000.0)
    mb = pm.Minibatch(data, batch_size=128)          # as test_inference's simple_model_data
    f = pytensor.function([], mb)
    core = CoreMinibatch(data, batch_size=128, random_seed=42)
    for _ in range(3):
        np.testing.assert_array_equal(f(), next(core))
    assert minibatch_step(mb).get_value() == 3
