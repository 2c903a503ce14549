"""Tests of nerf/rotations.py against closed forms, scipy and geometric ground truth."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from nerf.rotations import (
    Similarity,
    closest_point_to_axes,
    look_at,
    quat_to_rotmat,
    rotation_angle_deg,
    rotation_between,
    rotmat_to_quat,
    umeyama,
    up_alignment,
)

ROT_TOL = 1e-12  # float64 rotations built from a few products of unit quantities
S = math.sqrt(0.5)  # cos and sin of 45 degrees: the quaternion of a quarter turn

# Quarter turns (90 degrees) about each axis, right-handed: (quaternion (w, x, y, z), matrix).
QUARTER_TURNS = {
    "x": ([S, S, 0.0, 0.0], [[1, 0, 0], [0, 0, -1], [0, 1, 0]]),
    "y": ([S, 0.0, S, 0.0], [[0, 0, 1], [0, 1, 0], [-1, 0, 0]]),
    "z": ([S, 0.0, 0.0, S], [[0, -1, 0], [1, 0, 0], [0, 0, 1]]),
}


def random_unit_quats(n: int, seed: int = 0) -> np.ndarray:  # [n, 4] (w, x, y, z), w >= 0
    q = np.random.default_rng(seed).normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return np.where(q[:, :1] < 0, -q, q)


# --- quaternions ---------------------------------------------------------------------------


@pytest.mark.parametrize("axis", sorted(QUARTER_TURNS))
def test_quarter_turns_closed_form(axis):
    q, rot = QUARTER_TURNS[axis]
    np.testing.assert_allclose(quat_to_rotmat(np.array(q)), rot, atol=ROT_TOL)
    np.testing.assert_allclose(rotmat_to_quat(np.array(rot, dtype=float)), q, atol=ROT_TOL)


def test_quat_to_rotmat_analytic_and_normalises():
    angle = 0.7
    q = np.array([np.cos(angle / 2), 0.0, 0.0, np.sin(angle / 2)])  # rotation about +z
    c, s = np.cos(angle), np.sin(angle)
    np.testing.assert_allclose(quat_to_rotmat(q), [[c, -s, 0], [s, c, 0], [0, 0, 1]], atol=ROT_TOL)
    np.testing.assert_allclose(quat_to_rotmat(3.5 * q), quat_to_rotmat(q), atol=ROT_TOL)
    np.testing.assert_allclose(quat_to_rotmat(-q), quat_to_rotmat(q), atol=ROT_TOL)  # q and -q: one rotation


def test_quaternions_match_scipy_scalar_last():
    q = random_unit_quats(50)
    expected = Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix()  # scipy: (x, y, z, w)
    np.testing.assert_allclose(quat_to_rotmat(q), expected, atol=ROT_TOL)
    back = Rotation.from_matrix(expected).as_quat()[:, [3, 0, 1, 2]]
    back = np.where(back[:, :1] < 0, -back, back)
    np.testing.assert_allclose(rotmat_to_quat(expected), back, atol=ROT_TOL)


def test_quaternion_round_trip_and_sign_convention():
    qs = random_unit_quats(200)
    qs[:3] = [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [1e-9, 0.0, 0.0, 1.0]]  # 180-degree turns
    qs[:3] /= np.linalg.norm(qs[:3], axis=1, keepdims=True)
    for q in qs:
        rot = quat_to_rotmat(q)
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=ROT_TOL)
        assert np.linalg.det(rot) == pytest.approx(1.0, abs=ROT_TOL)
        back = rotmat_to_quat(rot)
        assert back[0] >= 0.0
        np.testing.assert_allclose(np.linalg.norm(back), 1.0, atol=ROT_TOL)
        np.testing.assert_allclose(quat_to_rotmat(back), rot, atol=ROT_TOL)
        if q[0] > 1e-6:  # away from w = 0 the sign convention makes the quaternion unique
            np.testing.assert_allclose(back, q, atol=ROT_TOL)
    np.testing.assert_array_equal(rotmat_to_quat(np.eye(3)), [1.0, 0.0, 0.0, 0.0])


def test_quaternions_batched_shapes():
    q = random_unit_quats(10).reshape(2, 5, 4)
    rot = quat_to_rotmat(q)
    assert rot.shape == (2, 5, 3, 3) and rot.dtype == np.float64
    np.testing.assert_allclose(rot[1, 3], quat_to_rotmat(q[1, 3]), atol=0)
    np.testing.assert_allclose(rotmat_to_quat(rot), q, atol=ROT_TOL)


def test_quaternions_torch_in_torch_out():
    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(200, 4, generator=g, dtype=torch.float64), dim=-1)
    q[:4] = torch.eye(4, dtype=torch.float64)  # identity and the three half turns
    rot = quat_to_rotmat(q)
    assert isinstance(rot, torch.Tensor) and rot.dtype == torch.float64 and rot.shape == (200, 3, 3)
    back = rotmat_to_quat(rot.float())  # float32 rotations in: float64 quaternions out
    assert isinstance(back, torch.Tensor) and back.dtype == torch.float64
    torch.testing.assert_close(quat_to_rotmat(back), rot, atol=1e-6, rtol=0)
    back = rotmat_to_quat(rot)
    torch.testing.assert_close(quat_to_rotmat(back), rot, atol=ROT_TOL, rtol=0)
    torch.testing.assert_close(back, q * torch.sign(q[:, :1] + (q[:, :1] == 0)), atol=ROT_TOL, rtol=0)


@pytest.mark.parametrize("bad", [[0.0, 0.0, 0.0, 0.0], [np.nan, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
def test_quat_to_rotmat_refuses_bad_quaternions(bad):
    with pytest.raises(ValueError, match="finite non-zero 4-vectors"):
        quat_to_rotmat(np.array(bad))


def test_rotmat_to_quat_refuses_bad_shapes():
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, 3\]"):
        rotmat_to_quat(np.eye(4))


def test_rotation_angle_deg():
    rots = np.stack([np.eye(3)] + [np.array(rot, dtype=float) for _, rot in QUARTER_TURNS.values()])
    np.testing.assert_allclose(rotation_angle_deg(rots), [0.0, 90.0, 90.0, 90.0], atol=1e-6)
    half_turn = quat_to_rotmat(np.array([0.0, 1.0, 1.0, 0.0]))
    assert rotation_angle_deg(half_turn[None])[0] == pytest.approx(180.0)


# --- directions and cameras ----------------------------------------------------------------


@pytest.mark.parametrize("a", [[0.3, -0.5, 0.8], [0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [1e-9, 0.0, -1.0],
                               [-2.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
@pytest.mark.parametrize("b", [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.2, 0.9, -0.4]])
def test_rotation_between_takes_a_to_b(a, b):
    a, b = np.array(a), np.array(b)
    rot = rotation_between(a, b)
    np.testing.assert_allclose(rot @ (a / np.linalg.norm(a)), b / np.linalg.norm(b), atol=1e-9)
    np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-9)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    # the smallest rotation: its angle is the angle between a and b
    cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    assert rotation_angle_deg(rot[None])[0] == pytest.approx(np.degrees(np.arccos(np.clip(cos, -1, 1))), abs=1e-5)


def test_rotation_between_antiparallel_is_a_half_turn():
    for a in ([0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.6, -0.8, 0.0]):
        a = np.array(a)
        rot = rotation_between(a, -a)
        np.testing.assert_allclose(rot @ a, -a, atol=1e-12)
        np.testing.assert_allclose(rot, rot.T, atol=1e-12)  # a half turn is its own inverse
        assert np.trace(rot) == pytest.approx(-1.0)
        assert np.linalg.det(rot) == pytest.approx(1.0)


def test_up_alignment_takes_mean_up_to_z():
    up = np.array([0.3, -0.4, 0.85])
    eyes = np.array([[3.0, 0.0, 1.0], [0.0, 3.0, 1.5], [-3.0, -1.0, 0.5], [1.0, -3.0, 2.0]])
    c2w = look_at(eyes, np.zeros(3), up)  # OpenCV: camera -y is the image up, in the plane of up
    rot = up_alignment(c2w)
    mean_up = -c2w[:, :3, 1].mean(axis=0)
    np.testing.assert_allclose(rot @ (mean_up / np.linalg.norm(mean_up)), [0.0, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-12)
    rolled = np.stack([np.eye(4), np.diag([-1.0, -1.0, 1.0, 1.0])])  # ups cancel: no direction
    np.testing.assert_array_equal(up_alignment(rolled), np.eye(3))
    np.testing.assert_allclose(up_alignment(c2w[:, :3, :3]), rot, atol=0)  # [C, 3, 3] works too


def test_look_at_properties():
    eye, target, up = np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.5, -1.0]), np.array([0.0, 0.0, 1.0])
    c2w = look_at(eye, target, up)
    assert c2w.shape == (4, 4) and c2w.dtype == np.float64
    rot = c2w[:3, :3]
    np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-12)
    assert np.linalg.det(rot) == pytest.approx(1.0)  # right-handed
    np.testing.assert_allclose(np.cross(rot[:, 0], rot[:, 1]), rot[:, 2], atol=1e-12)
    np.testing.assert_array_equal(c2w[:3, 3], eye)
    np.testing.assert_array_equal(c2w[3], [0.0, 0.0, 0.0, 1.0])
    forward = (target - eye) / np.linalg.norm(target - eye)
    np.testing.assert_allclose(rot[:, 2], forward, atol=1e-12)  # camera +z looks at the target
    assert abs(rot[:, 0] @ up) < 1e-12  # no roll: image x is horizontal
    assert rot[:, 1] @ up < 0  # image y (down) points against world up
    # a point above the target projects above the image centre: camera y < 0
    above = rot.T @ (target + [0.0, 0.0, 0.3] - eye)
    assert above[1] < 0 and above[2] > 0


def test_look_at_opengl_and_batches():
    eyes = np.array([[4.0, 0.0, 1.0], [0.0, -4.0, 2.0], [-3.0, 2.0, -1.0]])
    cv = look_at(eyes, np.zeros(3), [0.0, 0.0, 1.0])
    gl = look_at(eyes, np.zeros(3), [0.0, 0.0, 1.0], opengl=True)
    assert cv.shape == gl.shape == (3, 4, 4)
    np.testing.assert_allclose(gl, cv @ np.diag([1.0, -1.0, -1.0, 1.0]), atol=0)
    np.testing.assert_allclose(gl[:, :3, 2], eyes / np.linalg.norm(eyes, axis=1, keepdims=True), atol=1e-12)
    for i, eye in enumerate(eyes):
        np.testing.assert_array_equal(look_at(eye, np.zeros(3), [0.0, 0.0, 1.0]), cv[i])
    ups = np.tile([0.0, 0.0, 1.0], (3, 1))
    np.testing.assert_array_equal(look_at(eyes, np.zeros((3, 3)), ups), cv)


def test_look_at_torch_and_parallel_up():
    c2w = look_at(torch.tensor([[0.0, 0.0, -3.0]]), torch.zeros(1, 3), torch.tensor([0.0, -1.0, 0.0]))
    assert isinstance(c2w, torch.Tensor) and c2w.dtype == torch.float64
    torch.testing.assert_close(c2w[0, :3, :3], torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="parallel"):
        look_at([0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0])


def test_closest_point_to_axes_finds_the_meeting_point():
    rng = np.random.default_rng(3)
    point = np.array([0.4, -1.2, 2.0])
    origins = rng.normal(size=(8, 3)) * 5.0
    directions = (point - origins) * rng.uniform(0.5, 2.0, size=(8, 1))  # not unit: normalised inside
    np.testing.assert_allclose(closest_point_to_axes(origins, directions), point, atol=1e-10)
    # lines that miss each other: the least-squares point is still near, and torch gives torch
    noisy = origins + rng.normal(size=(8, 3)) * 1e-3
    found = closest_point_to_axes(torch.from_numpy(noisy), torch.from_numpy(directions))
    assert isinstance(found, torch.Tensor) and found.dtype == torch.float64
    np.testing.assert_allclose(found.numpy(), point, atol=1e-2)


def test_closest_point_to_axes_ill_posed():
    origins = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert closest_point_to_axes(origins, np.tile([0.0, 0.0, 1.0], (3, 1))) is None  # parallel
    # nearly parallel (axes 0.01 rad apart): accepted by default, refused by either threshold
    directions = np.array([[0.0, 0.0, 1.0], [0.01, 0.0, 1.0], [0.0, 0.01, 1.0]])
    assert closest_point_to_axes(origins, directions) is not None
    assert closest_point_to_axes(origins, directions, min_eigenvalue=1e-3) is None
    assert closest_point_to_axes(origins, directions, max_condition=1e3) is None


# --- similarity alignment ------------------------------------------------------------------


def test_umeyama_recovers_known_similarity():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(20, 3))
    angle = 0.9
    rot = quat_to_rotmat(np.array([np.cos(angle / 2), *(np.sin(angle / 2) * np.array([1.0, 2.0, 2.0]) / 3.0)]))
    sim = umeyama(points, 2.5 * points @ rot.T + [1.0, -2.0, 0.5])
    assert isinstance(sim, Similarity)
    assert sim.scale == pytest.approx(2.5)
    np.testing.assert_allclose(sim.rotation, rot, atol=1e-12)
    np.testing.assert_allclose(sim.translation, [1.0, -2.0, 0.5], atol=1e-12)
    np.testing.assert_allclose(sim.apply(points), 2.5 * points @ rot.T + [1.0, -2.0, 0.5], atol=1e-12)


def test_umeyama_never_reflects():
    rng = np.random.default_rng(2)
    points = rng.normal(size=(10, 3))
    sim = umeyama(points, points * [1.0, 1.0, -1.0])  # a mirror image: the best rotation is no mirror
    assert np.linalg.det(sim.rotation) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="P >= 3"):
        umeyama(points[:2], points[:2])
