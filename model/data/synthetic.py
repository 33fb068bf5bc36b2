"""Procedural multi-task indoor video: exact per-pixel ground truth by analytic ray casting.

A clip is one or two "shots" (two when it contains a scene cut).  A shot is a box-shaped
room (floor, ceiling, four walls, pictures on walls) with objects standing on the floor or on
tables (boxes, balls, cylinders, tables), lit by a directional light, a point light under the
ceiling and an ambient term, and filmed by a pinhole camera that either stands still (tripod)
or moves like a hand-held camera (slow smooth drift plus small high-frequency jitter) at 30 fps.

Everything is numpy and vectorised over pixels.  Each pixel casts one ray through its centre;
the nearest analytic intersection gives depth, normal, class and primitive id, so the ground
truth is exact for the rendered image (no anti-aliasing: colour and labels agree per pixel).

Conventions (see docs/data.md):
* world frame: metres, y up, the floor is y = 0;
* camera frame (OpenCV): x right, y down, z forward; depth is z-depth in millimetres;
* normals: unit vectors in the camera frame, oriented towards the camera (n . ray < 0);
* edges: see :func:`edges_from_geometry`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from deltamtl.model.tasks import TASKS as TASKS  # the tasks rendered here (one definition)

from . import textures as _tex

CLASS_NAMES: tuple[str, ...] = (
    "floor",
    "wall",
    "ceiling",
    "box",
    "ball",
    "cylinder",
    "table",
    "picture",
)
NUM_CLASSES: int = len(CLASS_NAMES)
IGNORE_INDEX = 255
FPS = 30.0
RENDERER_VERSION = 1

FLOOR, WALL, CEILING, BOX, BALL, CYLINDER, TABLE, PICTURE = range(NUM_CLASSES)

# Edge rule constants (docs/data.md): relative depth jump between neighbouring pixels that lie
# on different primitives.
EDGE_DEPTH_REL = 0.02


@dataclass
class Clip:
    """One rendered video clip with exact ground truth.

    rgb (T,H,W,3) uint8; semseg (T,H,W) uint8 class ids (255 = ignore, unused by the
    renderer); depth (T,H,W) float32 z-depth in mm (> 0 everywhere); normals (T,H,W,3)
    float32 unit, camera frame, facing the camera; edges (T,H,W) uint8 in {0, 1};
    meta: seed, fps, n_frames, height, width, K (3x3 intrinsics), cuts (frame indices t where
    frame t is the first frame of a new shot), shot (T,) shot index per frame, poses_c2w
    (T,4,4) camera-to-world, static_camera, static_objects, scene_cut, temporal_noise,
    class_names, renderer_version.
    """

    rgb: np.ndarray
    semseg: np.ndarray
    depth: np.ndarray
    normals: np.ndarray
    edges: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.rgb.shape[0])

    def __len__(self) -> int:
        return self.n_frames

    def frame(self, t: int) -> dict[str, np.ndarray]:
        return {
            "rgb": self.rgb[t],
            "semseg": self.semseg[t],
            "depth": self.depth[t],
            "normals": self.normals[t],
            "edges": self.edges[t],
        }


# ----------------------------------------------------------------------------------------------
# small geometry helpers


def _rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_axis(axis: np.ndarray, ang: float) -> np.ndarray:
    axis = np.asarray(axis, float)
    n = np.linalg.norm(axis)
    if n == 0 or ang == 0:
        return np.eye(3)
    x, y, z = axis / n
    c, s = math.cos(ang), math.sin(ang)
    C = 1 - c
    return np.array(
        [
            [c + x * x * C, x * y * C - z * s, x * z * C + y * s],
            [y * x * C + z * s, c + y * y * C, y * z * C - x * s],
            [z * x * C - y * s, z * y * C + x * s, c + z * z * C],
        ]
    )


def camera_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation; columns = camera x (right), y (down), z (forward) in world.

    yaw about world +y (0 = looking along +z), pitch positive looks up, roll about forward."""
    f = np.array([math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)])
    up = np.array([0.0, 1.0, 0.0])
    r = np.cross(f, up)
    r /= np.linalg.norm(r)
    d = np.cross(f, r)
    R = np.stack([r, d, f], axis=1)
    return R @ _rot_axis(np.array([0.0, 0.0, 1.0]), roll)


# ----------------------------------------------------------------------------------------------
# scene description (plain data so that it pickles and can be stored)


@dataclass
class _Material:
    tex: str
    color: np.ndarray  # (3,) albedo in [0, 1]
    contrast: float  # detail modulation
    scale: float  # metres per texture tile
    colour_tex: bool = False


@dataclass
class _Prim:
    kind: str  # "box" | "sphere" | "cylinder"
    cls: int
    mat: _Material
    center: np.ndarray  # box/sphere: centre; cylinder: (cx, y0, cz)
    size: np.ndarray  # box: half extents; sphere: (r,); cylinder: (r, height)
    yaw: float = 0.0
    # motion (all zero = static)
    move_dir: np.ndarray = field(default_factory=lambda: np.zeros(3))
    move_amp: float = 0.0
    move_freq: float = 0.0
    move_phase: float = 0.0
    yaw_amp: float = 0.0
    yaw_freq: float = 0.0
    bounce: float = 0.0
    bounce_freq: float = 0.0
    tex_rot: np.ndarray = field(default_factory=lambda: np.eye(3))


@dataclass
class _Picture:
    face: int  # room face (0, 1, 4, 5)
    u0: float
    u1: float
    v0: float
    v1: float
    tex: str


@dataclass
class _Shot:
    half_x: float
    height: float
    half_z: float
    floor_mat: _Material
    wall_mats: list  # 4 materials for faces 0, 1, 4, 5
    ceil_mat: _Material
    pictures: list
    prims: list
    # lighting
    light_dir: np.ndarray
    ambient: float
    k_dir: float
    point_light: np.ndarray
    k_point: float
    tint: np.ndarray
    # camera
    cam_p0: np.ndarray
    cam_ang0: np.ndarray  # yaw, pitch, roll
    drift_amp: np.ndarray  # (6,) x, y, z, yaw, pitch, roll amplitudes
    drift_freq: np.ndarray  # (6,)
    drift_phase: np.ndarray  # (6,)
    jit_amp: np.ndarray  # (6, 3)
    jit_freq: np.ndarray  # (6, 3)
    jit_phase: np.ndarray  # (6, 3)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    import colorsys

    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


def _material(rng: np.random.Generator, color, texs, scale_range, contrast_range) -> _Material:
    return _Material(
        tex=str(rng.choice(texs)),
        color=np.asarray(color, float),
        contrast=float(rng.uniform(*contrast_range)),
        scale=float(rng.uniform(*scale_range)),
    )


def _sample_shot(rng: np.random.Generator, static_camera: bool, static_objects: bool) -> _Shot:
    ax = rng.uniform(2.0, 3.5)
    az = rng.uniform(2.5, 4.5)
    h = rng.uniform(2.4, 3.2)

    # per-shot palette: a base hue and a scheme of offsets
    h0 = rng.uniform()
    scheme = rng.choice([0.08, 0.33, 0.5, 0.17])

    def pal(i: int, s_rng=(0.35, 0.9), v_rng=(0.45, 0.95)) -> np.ndarray:
        return _hsv(h0 + scheme * i + rng.normal(0, 0.03), rng.uniform(*s_rng), rng.uniform(*v_rng))

    floor_mat = _material(
        rng,
        _hsv(rng.uniform(0.03, 0.12), rng.uniform(0.2, 0.7), rng.uniform(0.3, 0.75)),
        ["wood", "gravel", "grass", "checker", "noise", "brick"],
        (0.4, 2.0),
        (0.15, 0.6),
    )
    wall_base = _hsv(h0, rng.uniform(0.05, 0.35), rng.uniform(0.65, 0.95))
    wall_tex = ["flat", "noise", "brick", "stripes", "moon"]
    wall_mats = []
    for _ in range(4):
        if rng.uniform() < 0.25:
            wall_mats.append(_material(rng, pal(2, (0.2, 0.6), (0.5, 0.9)), wall_tex, (0.8, 3.0), (0.1, 0.5)))
        else:
            wall_mats.append(_material(rng, wall_base, wall_tex, (0.8, 3.0), (0.05, 0.35)))
    ceil_mat = _material(
        rng, _hsv(h0, rng.uniform(0.0, 0.1), rng.uniform(0.75, 1.0)), ["flat", "noise", "moon"], (1.0, 3.0), (0.05, 0.2)
    )

    # camera: near the z = -az wall, looking into the room
    cam_p0 = np.array(
        [rng.uniform(-0.4, 0.4) * ax, rng.uniform(1.1, 1.7), -az + rng.uniform(0.7, 1.3)]
    )
    cam_ang0 = np.array(
        [np.deg2rad(rng.uniform(-25, 25)), np.deg2rad(rng.uniform(-30, 8)), np.deg2rad(rng.normal(0, 1.5))]
    )
    activity = rng.uniform(0.2, 1.0)
    drift_amp = activity * np.array(
        [0.3, 0.08, 0.25, np.deg2rad(25), np.deg2rad(8), np.deg2rad(2)]
    ) * rng.uniform(0.3, 1.0, 6)
    jit_amp = rng.uniform(0.3, 1.0, (6, 3)) * np.array(
        [0.002, 0.002, 0.002, np.deg2rad(0.15), np.deg2rad(0.15), np.deg2rad(0.1)]
    )[:, None]
    reach_z = drift_amp[2]
    if static_camera:  # drawn anyway so that the rest of the scene does not depend on the flag
        drift_amp = np.zeros(6)
        jit_amp = np.zeros((6, 3))
    drift_freq = rng.uniform(0.03, 0.15, 6)
    drift_phase = rng.uniform(0, 2 * np.pi, 6)
    jit_freq = rng.uniform(1.0, 6.0, (6, 3))
    jit_phase = rng.uniform(0, 2 * np.pi, (6, 3))

    # objects: placed in front of the camera's reachable area
    z_min = cam_p0[2] + reach_z + 0.8
    x_lim = ax - 0.25
    z_lim = az - 0.25
    occupied: list[tuple[float, float, float]] = []  # (x, z, radius) footprints
    prims: list[_Prim] = []
    obj_tex = ["flat", "checker", "stripes", "noise", "wood", "brick", "gravel", "camera", "grass"]

    def free(x: float, z: float, r: float) -> bool:
        if abs(x) > x_lim - r or z > z_lim - r or z < z_min + r:
            return False
        return all((x - ox) ** 2 + (z - oz) ** 2 > (r + orr + 0.05) ** 2 for ox, oz, orr in occupied)

    def place(r: float, tries: int = 40):
        for _ in range(tries):
            x = rng.uniform(-x_lim, x_lim)
            z = rng.uniform(z_min, z_lim)
            if free(x, z, r):
                return x, z
        return None

    n_obj = int(rng.integers(4, 11))
    n_tables = 0
    movers: list[_Prim] = []
    for i in range(n_obj):
        kind = rng.choice(["box", "ball", "cylinder", "table"], p=[0.3, 0.28, 0.22, 0.2])
        if kind == "table" and n_tables >= 2:
            kind = "box"
        col = pal(i + 1)
        mat = _material(rng, col, obj_tex, (0.2, 0.8), (0.1, 0.6))
        if kind == "table":
            tw, td = rng.uniform(0.4, 0.8), rng.uniform(0.3, 0.5)
            th = rng.uniform(0.68, 0.8)
            r = math.hypot(tw, td)
            pos = place(r)
            if pos is None:
                continue
            n_tables += 1
            occupied.append((pos[0], pos[1], r))
            yaw = rng.uniform(-np.pi, np.pi)
            Ry = _rot_y(yaw)
            top_t = 0.03
            prims.append(
                _Prim("box", TABLE, mat, np.array([pos[0], th - top_t, pos[1]]), np.array([tw, top_t, td]), yaw)
            )
            leg = 0.03
            for sx in (-1, 1):
                for sz in (-1, 1):
                    off = Ry @ np.array([sx * (tw - 0.06), 0.0, sz * (td - 0.06)])
                    prims.append(
                        _Prim(
                            "box",
                            TABLE,
                            mat,
                            np.array([pos[0] + off[0], (th - 2 * top_t) / 2, pos[1] + off[2]]),
                            np.array([leg, (th - 2 * top_t) / 2, leg]),
                            yaw,
                        )
                    )
            # small things on the table top
            for _ in range(int(rng.integers(0, 3))):
                lx, lz = rng.uniform(-0.6, 0.6) * tw, rng.uniform(-0.6, 0.6) * td
                off = Ry @ np.array([lx, 0.0, lz])
                m2 = _material(rng, pal(int(rng.integers(1, 6))), obj_tex, (0.1, 0.4), (0.1, 0.6))
                k2 = rng.choice(["box", "ball", "cylinder"])
                base = np.array([pos[0] + off[0], th, pos[1] + off[2]])
                if k2 == "box":
                    hs = rng.uniform(0.04, 0.12, 3)
                    prims.append(_Prim("box", BOX, m2, base + [0, hs[1], 0], hs, rng.uniform(-np.pi, np.pi)))
                elif k2 == "ball":
                    rr = rng.uniform(0.04, 0.1)
                    prims.append(_Prim("sphere", BALL, m2, base + [0, rr, 0], np.array([rr]),
                                       tex_rot=_rot_axis(rng.normal(size=3), rng.uniform(0, 6.3))))
                else:
                    rr, hh = rng.uniform(0.03, 0.08), rng.uniform(0.08, 0.3)
                    prims.append(_Prim("cylinder", CYLINDER, m2, base.copy(), np.array([rr, hh])))
            continue
        if kind == "box":
            hs = np.array([rng.uniform(0.12, 0.5), rng.uniform(0.1, 0.5), rng.uniform(0.12, 0.5)])
            r = math.hypot(hs[0], hs[2])
            pos = place(r)
            if pos is None:
                continue
            p = _Prim("box", BOX, mat, np.array([pos[0], hs[1], pos[1]]), hs, rng.uniform(-np.pi, np.pi))
        elif kind == "ball":
            rr = rng.uniform(0.1, 0.35)
            r = rr
            pos = place(r)
            if pos is None:
                continue
            p = _Prim("sphere", BALL, mat, np.array([pos[0], rr, pos[1]]), np.array([rr]),
                      tex_rot=_rot_axis(rng.normal(size=3), rng.uniform(0, 6.3)))
        else:
            rr, hh = rng.uniform(0.1, 0.35), rng.uniform(0.3, 1.4)
            r = rr
            pos = place(r)
            if pos is None:
                continue
            p = _Prim("cylinder", CYLINDER, mat, np.array([pos[0], 0.0, pos[1]]), np.array([rr, hh]))
        occupied.append((pos[0], pos[1], r))
        prims.append(p)
        movers.append(p)

    # motion parameters come from their own stream so that static_objects changes nothing else
    mrng = np.random.default_rng(rng.integers(0, 2**63))
    if not static_objects and movers:
        rng_main, rng = rng, mrng
        n_move = max(1, int(rng.binomial(len(movers), 0.5)))
        for j in rng.permutation(len(movers))[:n_move]:
            p = movers[j]
            ang = rng.uniform(0, 2 * np.pi)
            p.move_dir = np.array([math.cos(ang), 0.0, math.sin(ang)])
            p.move_amp = float(rng.uniform(0.1, 0.6))
            p.move_freq = float(rng.uniform(0.05, 0.35))
            p.move_phase = float(rng.uniform(0, 2 * np.pi))
            if p.kind == "box":
                p.yaw_amp = float(rng.uniform(0, 0.8))
                p.yaw_freq = float(rng.uniform(0.05, 0.3))
            if p.kind == "sphere" and rng.uniform() < 0.4:
                p.bounce = float(rng.uniform(0.05, 0.4))
                p.bounce_freq = float(rng.uniform(0.5, 1.5))
            # keep the swept path inside the room and clear of the camera
            rad = p.size[0] if p.kind != "box" else float(math.hypot(p.size[0], p.size[2]))
            for _ in range(20):
                ends = [p.center + s * p.move_amp * p.move_dir for s in (-1, 1)]
                if all(abs(e[0]) < x_lim - rad and z_min - 0.5 + rad < e[2] < z_lim - rad for e in ends):
                    break
                p.move_amp *= 0.7
        rng = rng_main

    # pictures on walls (coplanar: semantic edge without a depth edge)
    pictures = []
    for _ in range(int(rng.integers(0, 4))):
        face = int(rng.choice([0, 1, 5, 5]))
        half_u = az if face in (0, 1) else ax
        w = rng.uniform(0.3, 1.0)
        hgt = rng.uniform(0.3, 0.9)
        uc = rng.uniform(-half_u + w + 0.1, half_u - w - 0.1)
        vc = rng.uniform(1.0 + hgt / 2, min(h - 0.3, 2.2) - hgt / 2 + 0.3)
        pictures.append(_Picture(face, uc - w / 2, uc + w / 2, vc - hgt / 2, vc + hgt / 2,
                                 str(rng.choice(_tex.COLOUR_TEXTURES))))

    # lighting
    el = np.deg2rad(rng.uniform(20, 80))
    az_l = rng.uniform(0, 2 * np.pi)
    light_dir = np.array([math.cos(el) * math.cos(az_l), math.sin(el), math.cos(el) * math.sin(az_l)])
    warm = rng.uniform(-1, 1)
    tint = np.clip(np.array([1.0 + 0.08 * warm, 1.0, 1.0 - 0.1 * warm]), 0.8, 1.1)
    return _Shot(
        half_x=ax,
        height=h,
        half_z=az,
        floor_mat=floor_mat,
        wall_mats=wall_mats,
        ceil_mat=ceil_mat,
        pictures=pictures,
        prims=prims,
        light_dir=light_dir,
        ambient=float(rng.uniform(0.25, 0.5)),
        k_dir=float(rng.uniform(0.25, 0.6)),
        point_light=np.array([rng.uniform(-0.5, 0.5) * ax, h - 0.1, rng.uniform(-0.3, 0.6) * az]),
        k_point=float(rng.uniform(0.1, 0.5)),
        tint=tint,
        cam_p0=cam_p0,
        cam_ang0=cam_ang0,
        drift_amp=drift_amp,
        drift_freq=drift_freq,
        drift_phase=drift_phase,
        jit_amp=jit_amp,
        jit_freq=jit_freq,
        jit_phase=jit_phase,
    )


def _camera_pose(shot: _Shot, t: float) -> tuple[np.ndarray, np.ndarray]:
    """(R_c2w, position) at time t seconds since the start of the shot."""
    w = 2 * np.pi
    off = shot.drift_amp * (np.sin(w * shot.drift_freq * t + shot.drift_phase) - np.sin(shot.drift_phase))
    jit = np.sin(w * shot.jit_freq * t + shot.jit_phase) - np.sin(shot.jit_phase)
    off = off + (shot.jit_amp * jit).sum(axis=1)
    pos = shot.cam_p0 + off[:3]
    lim = np.array([shot.half_x - 0.2, shot.height - 0.2, shot.half_z - 0.2])
    pos = np.clip(pos, -lim * np.array([1, 0, 1]) + np.array([0, 0.3, 0]), lim)
    ang = shot.cam_ang0 + off[3:]
    return camera_rotation(*ang), pos


def _prim_pose(p: _Prim, t: float) -> tuple[np.ndarray, float, np.ndarray]:
    """(centre, yaw, texture rotation) of primitive p at time t."""
    if p.move_amp == 0 and p.yaw_amp == 0 and p.bounce == 0:
        return p.center, p.yaw, p.tex_rot
    s = p.move_amp * (math.sin(2 * np.pi * p.move_freq * t + p.move_phase) - math.sin(p.move_phase))
    c = p.center + s * p.move_dir
    yaw = p.yaw + p.yaw_amp * math.sin(2 * np.pi * p.yaw_freq * t)
    rot = p.tex_rot
    if p.kind == "sphere":
        if p.bounce:
            c = c + np.array([0.0, p.bounce * abs(math.sin(np.pi * p.bounce_freq * t)), 0.0])
        # rolling without slipping: rotation about (up x dir) by distance / r
        axis = np.cross(np.array([0.0, 1.0, 0.0]), p.move_dir)
        rot = _rot_axis(axis, s / p.size[0]) @ p.tex_rot
    return c, yaw, rot


# ----------------------------------------------------------------------------------------------
# ray casting

_EPS = 1e-6


def _hit_box(o, d, c, half, yaw):
    R = _rot_y(yaw)
    ol = (o - c) @ R  # world -> local: R^T (o - c)
    dl = d @ R
    tnear = np.full(d.shape[0], -np.inf)
    tfar = np.full(d.shape[0], np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(3):
            inv = 1.0 / dl[:, i]
            t1 = (-half[i] - ol[i]) * inv
            t2 = (half[i] - ol[i]) * inv
            tnear = np.fmax(tnear, np.minimum(t1, t2))  # fmax/fmin skip the 0 * inf NaNs
            tfar = np.fmin(tfar, np.maximum(t1, t2))
    hit = (tfar >= tnear) & (tnear > _EPS)
    return np.where(hit, tnear, np.inf)


def _hit_sphere(o, d, c, r):
    oc = o - c
    a = np.einsum("ij,ij->i", d, d)
    b = d @ oc
    cc = oc @ oc - r * r
    disc = b * b - a * cc
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / a
    hit = (disc >= 0) & (t > _EPS)
    return np.where(hit, t, np.inf)


def _hit_cyl(o, d, c, r, height):
    cx, y0, cz = c
    y1 = y0 + height
    ox, oz = o[0] - cx, o[2] - cz
    dx, dz, dy = d[:, 0], d[:, 2], d[:, 1]
    a = dx * dx + dz * dz
    b = dx * ox + dz * oz
    cc = ox * ox + oz * oz - r * r
    disc = b * b - a * cc
    with np.errstate(invalid="ignore", divide="ignore"):
        ts = (-b - np.sqrt(disc)) / a
        ys = o[1] + ts * dy
        side = (disc >= 0) & (ts > _EPS) & (ys >= y0) & (ys <= y1)
        t_side = np.where(side, ts, np.inf)
        plane = np.where(o[1] > y1, y1, y0)
        tc = (plane - o[1]) / dy
        xc = ox + tc * dx
        zc = oz + tc * dz
        cap = (tc > _EPS) & (xc * xc + zc * zc <= r * r) & ((o[1] > y1) | (o[1] < y0))
    t_cap = np.where(cap, tc, np.inf)
    return np.minimum(t_side, t_cap)


def _hit_room(o, d, lo, hi):
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = np.where(d > 0, hi, lo)
        t = (bound - o) / d
    t = np.where(np.isfinite(t) & (t > 0), t, np.inf)
    return t.min(axis=1)


def _grey_albedo(mat: _Material, u, v, texels) -> np.ndarray:
    det = _tex.sample(mat.tex, u / mat.scale, v / mat.scale, texels / mat.scale * _tex.TEX_RES)
    return np.clip(mat.color[None, :] * (1.0 + mat.contrast * det), 0.0, 1.0)


def _footprint(normal, dhat, dist_px):
    """Pixel footprint on the surface in metres: distance * pixel angle / cos(incidence)."""
    cosi = np.abs(np.einsum("ij,ij->i", normal, dhat))
    return dist_px / np.maximum(cosi, 0.2)


def _shade_room(shot: _Shot, P, dhat, dist_px):
    """Normals, classes and albedo for room hits at points P."""
    lo = np.array([-shot.half_x, 0.0, -shot.half_z])
    hi = np.array([shot.half_x, shot.height, shot.half_z])
    dist = np.concatenate([np.abs(P - lo), np.abs(P - hi)], axis=1)  # faces: x-,y-,z-,x+,y+,z+
    k = dist.argmin(axis=1)
    order = np.array([0, 2, 4, 1, 3, 5])  # -> our face ids 0:x- 1:x+ 2:floor 3:ceiling 4:z- 5:z+
    face = order[k]
    n = P.shape[0]
    normal = np.zeros((n, 3))
    axis = face // 2
    sign = np.where(face % 2 == 0, 1.0, -1.0)  # inward normals
    normal[np.arange(n), axis] = sign
    footprint = _footprint(normal, dhat, dist_px)
    cls = np.full(n, WALL, np.uint8)
    cls[face == 2] = FLOOR
    cls[face == 3] = CEILING
    albedo = np.zeros((n, 3))
    # texture coords per face
    u = np.where(axis == 0, P[:, 2], P[:, 0])
    v = np.where(axis == 1, P[:, 2], P[:, 1])
    m = face == 2
    albedo[m] = _grey_albedo(shot.floor_mat, u[m], v[m], footprint[m])
    m = face == 3
    albedo[m] = _grey_albedo(shot.ceil_mat, u[m], v[m], footprint[m])
    for j, f in enumerate((0, 1, 4, 5)):
        m = face == f
        if m.any():
            albedo[m] = _grey_albedo(shot.wall_mats[j], u[m], v[m], footprint[m])
    for pic in shot.pictures:
        m = (face == pic.face) & (u >= pic.u0) & (u <= pic.u1) & (v >= pic.v0) & (v <= pic.v1)
        if m.any():
            pu = (u[m] - pic.u0) / (pic.u1 - pic.u0)
            if pic.face in (1, 4):  # keep pictures upright and unmirrored seen from inside
                pu = 1.0 - pu
            pv = 1.0 - (v[m] - pic.v0) / (pic.v1 - pic.v0)
            texels = footprint[m] / (pic.u1 - pic.u0) * _tex.TEX_RES
            albedo[m] = _tex.sample(pic.tex, pu, pv, texels, wrap=False)
            cls[m] = PICTURE
    return normal, cls, albedo


def _shade_prim(p: _Prim, pose, P, dhat, dist_px):
    c, yaw, rot = pose
    n = P.shape[0]
    if p.kind == "box":
        R = _rot_y(yaw)
        q = (P - c) @ R
        rel = np.abs(q) / p.size[None, :]
        ax = rel.argmax(axis=1)
        nl = np.zeros((n, 3))
        nl[np.arange(n), ax] = np.sign(q[np.arange(n), ax])
        normal = nl @ R.T
        # face coords: the two other local axes
        ua = np.where(ax == 0, q[:, 2], q[:, 0])
        va = np.where(ax == 1, q[:, 2], q[:, 1])
        u, v = ua + p.size.sum(), va + p.size.sum()
    elif p.kind == "sphere":
        r = p.size[0]
        normal = (P - c) / r
        loc = normal @ rot  # rotate into the ball's texture frame
        u = (np.arctan2(loc[:, 0], loc[:, 2]) / (2 * np.pi) + 0.5) * (2 * np.pi * r)
        v = np.arccos(np.clip(loc[:, 1], -1, 1)) * r
    else:
        r, hh = p.size
        cx, y0, cz = c
        rad = np.hypot(P[:, 0] - cx, P[:, 2] - cz)
        top = np.abs(P[:, 1] - (y0 + hh))
        bot = np.abs(P[:, 1] - y0)
        on_cap = np.minimum(top, bot) < np.abs(rad - r)
        normal = np.zeros((n, 3))
        normal[:, 0] = (P[:, 0] - cx) / r
        normal[:, 2] = (P[:, 2] - cz) / r
        normal[on_cap] = 0.0
        normal[on_cap, 1] = np.where(top[on_cap] < bot[on_cap], 1.0, -1.0)
        ang = np.arctan2(P[:, 0] - cx, P[:, 2] - cz)
        u = np.where(on_cap, P[:, 0] - cx, ang * r)
        v = np.where(on_cap, P[:, 2] - cz, P[:, 1])
    nn = np.linalg.norm(normal, axis=1, keepdims=True)
    normal = normal / np.maximum(nn, 1e-12)
    albedo = _grey_albedo(p.mat, u, v, _footprint(normal, dhat, dist_px))
    return normal, np.full(n, p.cls, np.uint8), albedo


def edges_from_geometry(semseg: np.ndarray, prim: np.ndarray, depth: np.ndarray,
                        rel: float = EDGE_DEPTH_REL) -> np.ndarray:
    """Edge map (uint8 {0,1}) from semantic and depth discontinuities.

    Two 4-neighbouring pixels p, q are *discontinuous* if their classes differ, or if they lie
    on different primitives and |z_p - z_q| > rel * min(z_p, z_q).  Each discontinuous pair
    marks the nearer pixel (smaller z; both on a tie), i.e. the boundary is drawn one pixel
    thick on the occluding side.  Works on (..., H, W) arrays.
    """
    e = np.zeros(semseg.shape, bool)
    for axis in (-1, -2):
        n = semseg.shape[axis]
        a = [slice(None)] * semseg.ndim
        b = [slice(None)] * semseg.ndim
        a[axis] = slice(0, n - 1)
        b[axis] = slice(1, n)
        a, b = tuple(a), tuple(b)
        za, zb = depth[a], depth[b]
        disc = (semseg[a] != semseg[b]) | (
            (prim[a] != prim[b]) & (np.abs(za - zb) > rel * np.minimum(za, zb))
        )
        e[a] |= disc & (za <= zb)
        e[b] |= disc & (zb <= za)
    return e.astype(np.uint8)


def _ray_dirs(K: np.ndarray, height: int, width: int) -> np.ndarray:
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    x = (u + 0.5 - K[0, 2]) / K[0, 0]
    y = (v + 0.5 - K[1, 2]) / K[1, 1]
    return np.stack([x.ravel(), y.ravel(), np.ones(height * width)], axis=1)


def _bounding_sphere(p: _Prim, c: np.ndarray) -> tuple[np.ndarray, float]:
    if p.kind == "box":
        return c, float(np.linalg.norm(p.size))
    if p.kind == "sphere":
        return c, float(p.size[0])
    r, h = p.size
    return np.array([c[0], c[1] + h / 2, c[2]]), float(math.hypot(r, h / 2))


def _screen_rect(p: _Prim, c, R, o, K, height: int, width: int):
    """Conservative pixel rectangle (v0, v1, u0, u1) that can see primitive p, or None."""
    cen, rad = _bounding_sphere(p, c)
    pc = R.T @ (cen - o)
    if pc[2] + rad <= 1e-3:
        return None  # behind the camera
    if pc[2] - rad <= 1e-3:
        return 0, height, 0, width  # spans the camera plane: test every pixel
    zs = (pc[2] - rad, pc[2] + rad)
    rng_ = []
    for a in (0, 1):
        ratios = [(pc[a] + s * rad) / z for s in (-1, 1) for z in zs]
        f, cc = K[a, a], K[a, 2]
        lo_, hi_ = f * min(ratios) + cc - 0.5, f * max(ratios) + cc - 0.5
        rng_.append((int(math.floor(lo_)) - 1, int(math.ceil(hi_)) + 2))
    (u0, u1), (v0, v1) = rng_
    u0, u1 = max(u0, 0), min(u1, width)
    v0, v1 = max(v0, 0), min(v1, height)
    if u0 >= u1 or v0 >= v1:
        return None
    return v0, v1, u0, u1


def _render_frame(shot: _Shot, t: float, K: np.ndarray, dirs_c: np.ndarray, height: int, width: int):
    R, o = _camera_pose(shot, t)
    d = dirs_c @ R.T  # world directions, camera-z component 1 -> t is z-depth
    lo = np.array([-shot.half_x, 0.0, -shot.half_z])
    hi = np.array([shot.half_x, shot.height, shot.half_z])
    best = _hit_room(o, d, lo, hi)
    pid = np.zeros(best.shape[0], np.int32)
    best2 = best.reshape(height, width)
    pid2 = pid.reshape(height, width)
    d2 = d.reshape(height, width, 3)
    poses = []
    for k, p in enumerate(shot.prims, start=1):
        pose = _prim_pose(p, t)
        poses.append(pose)
        c, yaw, _ = pose
        rect = _screen_rect(p, c, R, o, K, height, width)
        if rect is None:
            continue
        v0, v1, u0, u1 = rect
        dd = d2[v0:v1, u0:u1].reshape(-1, 3)
        if p.kind == "box":
            tk = _hit_box(o, dd, c, p.size, yaw)
        elif p.kind == "sphere":
            tk = _hit_sphere(o, dd, c, p.size[0])
        else:
            tk = _hit_cyl(o, dd, c, p.size[0], p.size[1])
        tk = tk.reshape(v1 - v0, u1 - u0)
        bv = best2[v0:v1, u0:u1]
        m = tk < bv
        bv[m] = tk[m]
        pid2[v0:v1, u0:u1][m] = k
    P = o + best[:, None] * d
    dn = np.linalg.norm(d, axis=1)
    dhat = d / dn[:, None]
    N = best.shape[0]
    normal = np.empty((N, 3))
    cls = np.empty(N, np.uint8)
    albedo = np.empty((N, 3))
    dist_px = best * dn / K[0, 0]  # metres per pixel at the hit distance
    for k in np.flatnonzero(np.bincount(pid)):
        m = pid == k
        if k == 0:
            nrm, cl, alb = _shade_room(shot, P[m], dhat[m], dist_px[m])
        else:
            nrm, cl, alb = _shade_prim(shot.prims[k - 1], poses[k - 1], P[m], dhat[m], dist_px[m])
        normal[m], cls[m], albedo[m] = nrm, cl, alb
    # orient towards the camera
    flip = np.einsum("ij,ij->i", normal, d) > 0
    normal[flip] *= -1
    # lighting: ambient + directional + point light (no cast shadows)
    lam = np.clip(normal @ shot.light_dir, 0, None)
    Lp = shot.point_light[None, :] - P
    dl = np.linalg.norm(Lp, axis=1)
    lamp = np.clip(np.einsum("ij,ij->i", normal, Lp) / np.maximum(dl, 1e-6), 0, None)
    lamp = lamp / (1.0 + (dl / 2.5) ** 2)
    shade = shot.ambient + shot.k_dir * lam + shot.k_point * 2.0 * lamp
    lin = albedo * shade[:, None] * shot.tint[None, :]
    normal_c = normal @ R  # world -> camera: R^T n
    return (
        lin.reshape(height, width, 3),
        cls.reshape(height, width),
        best.reshape(height, width),
        normal_c.reshape(height, width, 3),
        pid.reshape(height, width),
        R,
        o,
    )


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFFFFFF, *stream])


def render_clip(
    seed: int,
    n_frames: int,
    height: int = 64,
    width: int = 64,
    *,
    static_camera: bool | None = None,
    scene_cut: bool | None = None,
    static_objects: bool | None = None,
    temporal_noise: float | None = None,
) -> Clip:
    """Render a clip deterministically from `seed`.

    static_camera / scene_cut / static_objects: None = decided by the seed (about 20 %, 20 %
    and 25 % of clips).  temporal_noise: std of per-frame sensor noise in 8-bit units (None =
    by seed: 0 for about a third of clips, else 0.5..2).  A fixed-pattern noise (same every
    frame) is always present, so a static camera on a static scene with temporal_noise=0 gives
    bit-identical frames.  Overriding a flag does not change the rest of the scene.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if height < 2 or width < 2:
        raise ValueError(f"height and width must be >= 2, got {height}x{width}")
    flags = _rng(seed, 0)
    u = flags.uniform(size=6)
    if static_camera is None:
        static_camera = bool(u[0] < 0.2)
    if scene_cut is None:
        scene_cut = bool(u[1] < 0.2) and n_frames >= 4
    if static_objects is None:
        static_objects = bool(u[2] < 0.25)
    if temporal_noise is None:
        temporal_noise = 0.0 if u[3] < 0.35 else float(0.5 + 1.5 * u[4])
    cut_at = int(n_frames // 4 + flags.integers(0, max(1, n_frames // 2))) if scene_cut else None
    if scene_cut and (cut_at is None or cut_at < 1 or cut_at >= n_frames):
        if n_frames < 2:
            scene_cut, cut_at = False, None
        else:
            cut_at = max(1, min(n_frames - 1, n_frames // 2))

    # intrinsics (same scene at any resolution: horizontal field of view is fixed per clip)
    fov = np.deg2rad(55 + 15 * u[5])
    fx = width / 2 / math.tan(fov / 2)
    K = np.array([[fx, 0, width / 2], [0, fx, height / 2], [0, 0, 1.0]])
    dirs = _ray_dirs(K, height, width)

    shots = [_sample_shot(_rng(seed, 1, 0), static_camera, static_objects)]
    if scene_cut:
        shots.append(_sample_shot(_rng(seed, 1, 1), static_camera, static_objects))

    T = n_frames
    rgb = np.empty((T, height, width, 3), np.uint8)
    sem = np.empty((T, height, width), np.uint8)
    depth = np.empty((T, height, width), np.float32)
    normals = np.empty((T, height, width, 3), np.float32)
    edges = np.empty((T, height, width), np.uint8)
    poses = np.zeros((T, 4, 4))
    shot_idx = np.zeros(T, np.int64)

    nrng = _rng(seed, 2)
    fpn = nrng.normal(0, 1.2, (height, width, 3))  # fixed-pattern noise, 8-bit units
    yy, xx = np.mgrid[0:height, 0:width]
    r2 = ((xx + 0.5 - width / 2) / (width / 2)) ** 2 + ((yy + 0.5 - height / 2) / (height / 2)) ** 2
    vignette = (1.0 - 0.12 * r2)[..., None]
    exposure = 1.0 + 0.15 * nrng.standard_normal()
    trng = _rng(seed, 3)

    for t in range(T):
        s = 1 if (cut_at is not None and t >= cut_at) else 0
        t0 = cut_at if s == 1 else 0
        lin, cl, z, nc, pid, R, o = _render_frame(shots[s], (t - t0) / FPS, K, dirs, height, width)
        img = 255.0 * lin * vignette * exposure + fpn
        if temporal_noise > 0:
            img = img + trng.normal(0, temporal_noise, img.shape)
        rgb[t] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        sem[t] = cl
        depth[t] = (z * 1000.0).astype(np.float32)
        nrm = nc.astype(np.float32)
        nrm /= np.linalg.norm(nrm, axis=-1, keepdims=True)
        normals[t] = nrm
        edges[t] = edges_from_geometry(cl, pid, z)
        poses[t, :3, :3] = R
        poses[t, :3, 3] = o
        poses[t, 3, 3] = 1.0
        shot_idx[t] = s

    meta: dict[str, Any] = {
        "seed": int(seed),
        "fps": FPS,
        "n_frames": T,
        "height": height,
        "width": width,
        "K": K,
        "cuts": [cut_at] if cut_at is not None else [],
        "shot": shot_idx,
        "poses_c2w": poses,
        "static_camera": bool(static_camera),
        "static_objects": bool(static_objects),
        "scene_cut": cut_at is not None,
        "temporal_noise": float(temporal_noise),
        "class_names": list(CLASS_NAMES),
        "renderer_version": RENDERER_VERSION,
    }
    return Clip(rgb, sem, depth, normals, edges, meta)


# ----------------------------------------------------------------------------------------------
# meta (de)serialisation, shared by the NYUD writer and the .npz cache


def meta_to_json(meta: dict) -> str:
    def conv(v):
        if isinstance(v, np.ndarray):
            return {"__ndarray__": v.tolist(), "dtype": str(v.dtype)}
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        return v

    return json.dumps(conv(meta))


def meta_from_json(text: str) -> dict:
    def conv(v):
        if isinstance(v, dict):
            if "__ndarray__" in v:
                return np.asarray(v["__ndarray__"], dtype=v["dtype"])
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, list):
            return [conv(x) for x in v]
        return v

    return conv(json.loads(text))
