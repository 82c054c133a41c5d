"""torch's threads in a forked child, made safe whatever was imported first.

Registered when ``skconvfeat.learned`` is imported (by ``import skconvfeat``
or by unpickling a model), not when torch's own modules are: a program that
uses torch, loads a model and then forks has not imported
:mod:`skconvfeat.learned._network` before the fork, so a hook registered
there came too late and the children hung.
"""

import os
import sys


def _one_torch_thread_in_forked_child():
    # torch's OpenMP pool does not survive fork(): a child that runs a parallel
    # region the parent had started can wait forever on threads it does not have.
    # One thread runs every operation inline, so predict in joblib/multiprocessing
    # workers started by fork finishes. torch is not imported here: a program
    # that never loaded it has no pool to lose.
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "set_num_threads"):  # not a half-imported torch
        torch.set_num_threads(1)


os.register_at_fork(after_in_child=_one_torch_thread_in_forked_child)
