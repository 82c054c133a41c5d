"""Suite-wide guards."""

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _global_random_state_untouched(request):
    """No test draws from NumPy's global random state: one that did would make the tests after it depend on
    which tests ran before (issue 27: a test passed alone and failed in the suite). scikit-learn's own contract
    checks are theirs to seed (check_methods_sample_order_invariance is not), so they are exempt."""
    if request.node.name.startswith("test_sklearn_contract"):
        yield
        return
    before = np.random.get_state()
    yield
    after = np.random.get_state()
    assert after[2] == before[2] and np.array_equal(after[1], before[1]), "the test drew from np.random's global state"
