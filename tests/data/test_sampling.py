"""Tests for the hash helpers of lit_llm/data/sampling.py (the sample arithmetic is in tests/test_datamodule.py)."""

import numpy as np

from lit_llm.data.sampling import key_uniform, mix64, splitmix64


def test_splitmix64_is_the_reference_generator_and_leaves_its_input():
    # splitmix64 seeded with 0: its first outputs, from the reference C implementation.
    states = np.array([0, 0x9E3779B97F4A7C15], dtype=np.uint64)  # the generator's states before steps 1, 2
    expected = np.array([0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4], dtype=np.uint64)
    assert np.array_equal(splitmix64(states), expected)
    assert splitmix64(np.uint64(0)) == np.uint64(0xE220A8397B1DCDAF)  # scalars too, without warnings
    assert np.array_equal(states, [0, 0x9E3779B97F4A7C15])


def test_mix64_works_in_place():
    x = np.arange(5, dtype=np.uint64)
    out = mix64(x)
    assert out is x and len(set(x.tolist())) == 5 and x[0] == 0  # a bijection that fixes 0


def test_key_uniform_is_a_pure_function_of_the_key():
    draws = [key_uniform(f"doc{i}") for i in range(2000)]
    assert draws == [key_uniform(f"doc{i}") for i in range(2000)]
    assert all(0 <= d < 1 for d in draws) and 0.45 < float(np.mean(draws)) < 0.55
    assert key_uniform("lone \udc80 surrogate") != key_uniform("lone  surrogate")
