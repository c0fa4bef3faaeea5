"""A child process's own memory cap: the soft address-space limit drops to it, the hard limit never moves (the
conftest fixture puts the soft limit back after the test)."""
import resource

from recipe_core import limits


def test_limit_memory_lowers_the_soft_limit_and_keeps_the_hard_one():
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = 64 * 2**30
    limits.limit_memory(cap)
    now_soft, now_hard = resource.getrlimit(resource.RLIMIT_AS)
    assert now_hard == hard
    assert now_soft == (cap if hard == resource.RLIM_INFINITY else min(cap, hard))
