import pytest

from expr3d.training.schedules import LinearDecaySchedule


def test_constant_then_linear_decay_in_blocks():
    schedule = LinearDecaySchedule(1e-4, num_steps=100, decay_every=10)
    assert [schedule(s) for s in (0, 49, 50, 59)] == [1e-4] * 4
    assert schedule(60) == pytest.approx(0.8e-4)
    assert schedule(69) == schedule(60)
    assert schedule(99) == pytest.approx(0.2e-4)
    assert schedule(100) == 0.0
    values = [schedule(s) for s in range(100)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_paper_schedule_and_bad_arguments():
    schedule = LinearDecaySchedule(1e-4, num_steps=300000, decay_every=1000)
    assert schedule(149999) == 1e-4 and schedule(151000) == pytest.approx(1e-4 * (1 - 1000 / 150000))
    assert LinearDecaySchedule(1e-4, 10, decay_start=10, decay_every=1)(9) == 1e-4
    with pytest.raises(ValueError, match="decay_every"):
        LinearDecaySchedule(1e-4, 10, decay_every=0)
