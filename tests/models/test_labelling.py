"""Spatial screen and D_s (eq. 6), with property tests of the labelling invariants."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ladsdin.models.labelling import label_anomalies, object_sizes, seismic_objects


def test_four_and_eight_connectivity_differ_on_diagonals():
    m = np.eye(4, dtype=bool)
    assert label_anomalies(m, 4)[1] == 4
    assert label_anomalies(m, 8)[1] == 1


def test_seismic_objects_keep_only_objects_larger_than_n_a():
    a = np.zeros((10, 10), bool)
    a[0:3, 0:3] = True  # 9 px
    a[6:8, 6:10] = True  # 8 px
    resid = np.arange(100, dtype=np.float32).reshape(10, 10) - 50
    objs, ds, largest = seismic_objects(a, resid, n_a=8)
    assert largest == 9
    assert len(objs) == 1 and objs[0].n_pixels == 9  # 8 px is not *more than* N_a = 8
    assert np.isfinite(ds).sum() == 9
    np.testing.assert_array_equal(ds[0:3, 0:3], resid[0:3, 0:3])  # eq. 6: D_s = D_k - P_k
    assert objs[0].los_min_mm == -50 and objs[0].los_max_mm == -28


def test_objects_are_deterministic_in_raster_order():
    a = np.zeros((6, 6), bool)
    a[4:6, 0:3] = True
    a[0:2, 3:6] = True
    objs, _, _ = seismic_objects(a, np.zeros((6, 6), np.float32), n_a=1)
    assert [o.index for o in objs] == [0, 1]
    assert objs[0].rows.min() == 0 and objs[1].rows.min() == 4


@settings(max_examples=60, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 12), st.integers(1, 12))), st.sampled_from([4, 8]), st.integers(0, 6))
def test_labelling_partitions_the_mask(mask, conn, n_a):
    labels, n = label_anomalies(mask, conn)
    assert ((labels > 0) == mask).all()  # every anomalous pixel in exactly one object
    sizes = object_sizes(labels, n)
    assert sizes.sum() == mask.sum() and (sizes > 0).all()
    objs, ds, largest = seismic_objects(mask, np.ones(mask.shape, np.float32), n_a, conn)
    assert largest == (sizes.max() if n else 0)
    assert sum(o.n_pixels for o in objs) == int(np.isfinite(ds).sum())
    assert all(o.n_pixels > n_a for o in objs)
    # 8-connectivity never yields more objects than 4-connectivity
    assert label_anomalies(mask, 8)[1] <= label_anomalies(mask, 4)[1]
