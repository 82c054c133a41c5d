"""Calling a fitted estimator from many threads at once (the thread-stress tests' one helper)."""

import threading

N_THREADS = 16


def at_once(call, n_threads=N_THREADS):
    """``call()`` from ``n_threads`` threads released together by a barrier; the list of their results.

    A thread's exception is otherwise lost: every one raised is collected and the call fails on them.
    """
    barrier = threading.Barrier(n_threads)
    results, errors = [None] * n_threads, []

    def work(i):
        try:
            barrier.wait()
            results[i] = call()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results
