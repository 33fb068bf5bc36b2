"""Dense-prediction metrics of the multi-task literature, in numpy (definitions: docs/metrics.md).

Conventions (channel-last): semseg pred/target int [N,H,W] (255 = ignore in the target);
depth [N,H,W] in mm (valid where target > 0); normals [N,H,W,3]; edge and saliency predictions
are probabilities [N,H,W] in [0,1] with binary targets.  A single image [H,W] is accepted too.

Ratios (mIoU, odsF, maxF and the like) are fractions in [0, 1]; multiply by 100 for tables.

Functions compute a metric over the whole batch they are given; meters (``make_meter``)
accumulate the same sufficient statistics over many batches, so the meter over a data set
equals the function on the concatenated data set.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

IGNORE_INDEX = 255

#: task -> (key of its primary metric in the meter's dict, higher is better)
PRIMARY_METRIC: dict[str, tuple[str, bool]] = {
    "semseg": ("mIoU", True),
    "depth": ("rmse_mm", False),
    "normals": ("mErr_deg", False),
    "edges": ("odsF", True),
    "sal": ("maxF", True),
    "human_parts": ("mIoU", True),
}

#: NYUD / PASCAL convention of the MTL literature: boundary matching tolerance as a fraction of
#: the image diagonal.
EDGE_TOLERANCE_FRACTION = 0.011
DEFAULT_THRESHOLDS = np.linspace(0.01, 0.99, 99)


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _batched(x: np.ndarray, ndim: int, name: str) -> np.ndarray:
    """Add a batch axis to a single image; check the rank."""
    if x.ndim == ndim - 1:
        x = x[None]
    if x.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim - 1}-D or {ndim}-D array, got shape {x.shape}")
    return x


def _same_shape(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: prediction shape {a.shape} != target shape {b.shape}")


# ----------------------------------------------------------------------------------------------
# semantic segmentation


def confusion_matrix(pred, target, num_classes: int, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """C[t, p] = number of valid pixels with target class t predicted as p.

    Valid pixels: target != ignore_index and 0 <= target < num_classes.  Predictions outside
    [0, num_classes) are counted in an extra last column (wrong for every class), so the
    matrix is (num_classes, num_classes + 1).
    """
    p = _np(pred).astype(np.int64).ravel()
    t = _np(target).astype(np.int64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"semseg: prediction size {p.size} != target size {t.size}")
    valid = (t != ignore_index) & (t >= 0) & (t < num_classes)
    p, t = p[valid], t[valid]
    p = np.where((p >= 0) & (p < num_classes), p, num_classes)
    return np.bincount(t * (num_classes + 1) + p, minlength=num_classes * (num_classes + 1)).reshape(
        num_classes, num_classes + 1
    )


def iou_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class IoU = TP / (TP + FP + FN); NaN for classes absent from both pred and target."""
    k = cm.shape[0]
    tp = np.diag(cm[:, :k]).astype(np.float64)
    fn = cm.sum(axis=1) - tp
    fp = cm[:, :k].sum(axis=0) - tp
    den = tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, tp / np.where(den > 0, den, 1), np.nan)


def per_class_iou(pred, target, num_classes: int, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    return iou_from_confusion(confusion_matrix(pred, target, num_classes, ignore_index))


def miou(pred, target, num_classes: int, ignore_index: int = IGNORE_INDEX) -> float:
    """Mean IoU over classes present in the prediction or the target (valid pixels only)."""
    iou = per_class_iou(pred, target, num_classes, ignore_index)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


class SemsegMeter:
    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, class_names=None):
        if not num_classes or num_classes < 1:
            raise ValueError("semseg meter needs num_classes >= 1")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.class_names = list(class_names) if class_names is not None else None
        self.reset()

    def reset(self):
        self.cm = np.zeros((self.num_classes, self.num_classes + 1), np.int64)

    def update(self, pred, target):
        p, t = _np(pred), _np(target)
        _same_shape(p, t, "semseg")
        self.cm += confusion_matrix(p, t, self.num_classes, self.ignore_index)

    def per_class(self) -> np.ndarray:
        return iou_from_confusion(self.cm)

    def compute(self) -> dict[str, float]:
        iou = self.per_class()
        n = self.cm.sum()
        out = {
            "mIoU": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
            "pixel_acc": float(np.trace(self.cm[:, : self.num_classes]) / n) if n else float("nan"),
        }
        names = self.class_names or [str(i) for i in range(self.num_classes)]
        for name, v in zip(names, iou, strict=True):
            out[f"IoU/{name}"] = float(v)
        return out


# ----------------------------------------------------------------------------------------------
# depth


def _depth_terms(pred, target):
    p = _np(pred).astype(np.float64)
    t = _np(target).astype(np.float64)
    _same_shape(p, t, "depth")
    valid = np.isfinite(t) & (t > 0)
    d = p[valid] - t[valid]
    pv = np.maximum(p[valid], 1e-9)
    return (
        float(np.sum(d * d)),
        float(np.sum(np.abs(d))),
        float(np.sum(np.abs(d) / t[valid])),
        float(np.sum((np.log(pv) - np.log(t[valid])) ** 2)),
        int(valid.sum()),
    )


def depth_rmse(pred_mm, target_mm) -> float:
    """sqrt(mean over valid pixels (target > 0) of (pred - target)^2), pixels pooled over the batch."""
    se, _, _, _, n = _depth_terms(pred_mm, target_mm)
    return float(np.sqrt(se / n)) if n else float("nan")


class DepthMeter:
    def __init__(self):
        self.reset()

    def reset(self):
        self.se = self.ae = self.rel = self.lse = 0.0
        self.n = 0

    def update(self, pred, target):
        se, ae, rel, lse, n = _depth_terms(pred, target)
        self.se += se
        self.ae += ae
        self.rel += rel
        self.lse += lse
        self.n += n

    def compute(self) -> dict[str, float]:
        if not self.n:
            return {"rmse_mm": float("nan"), "mae_mm": float("nan"), "abs_rel": float("nan"),
                    "log_rmse": float("nan")}
        return {
            "rmse_mm": float(np.sqrt(self.se / self.n)),
            "mae_mm": self.ae / self.n,
            "abs_rel": self.rel / self.n,
            "log_rmse": float(np.sqrt(self.lse / self.n)),
        }


# ----------------------------------------------------------------------------------------------
# surface normals


def normal_angles_deg(pred, target) -> np.ndarray:
    """Angles (degrees) between normalised pred and target at valid pixels (|target| > 0).

    A zero prediction has no direction: it counts as 90 degrees."""
    p = _np(pred).astype(np.float64)
    t = _np(target).astype(np.float64)
    _same_shape(p, t, "normals")
    if p.shape[-1] != 3:
        raise ValueError(f"normals: last axis must be 3, got shape {p.shape}")
    p = p.reshape(-1, 3)
    t = t.reshape(-1, 3)
    tn = np.linalg.norm(t, axis=1)
    valid = np.isfinite(tn) & (tn > 0)
    p, t, tn = p[valid], t[valid], tn[valid]
    pn = np.linalg.norm(p, axis=1)
    cos = np.einsum("ij,ij->i", p, t) / (np.where(pn > 0, pn, 1.0) * tn)
    cos = np.where(pn > 0, cos, 0.0)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def normal_mean_angle_error(pred, target) -> float:
    a = normal_angles_deg(pred, target)
    return float(a.mean()) if a.size else float("nan")


class NormalsMeter:
    """Mean, median (to 0.01 degree), RMSE of the angle and the fractions within 11.25/22.5/30."""

    _BINS = 18000  # 0.01 degree bins for the median

    def __init__(self):
        self.reset()

    def reset(self):
        self.sum = self.sq = 0.0
        self.n = 0
        self.hist = np.zeros(self._BINS, np.int64)
        self.within = {11.25: 0, 22.5: 0, 30.0: 0}

    def update(self, pred, target):
        a = normal_angles_deg(pred, target)
        self.sum += float(a.sum())
        self.sq += float(np.sum(a * a))
        self.n += a.size
        idx = np.clip((a * 100).astype(np.int64), 0, self._BINS - 1)
        self.hist += np.bincount(idx, minlength=self._BINS)
        for k in self.within:
            self.within[k] += int(np.sum(a < k))

    def compute(self) -> dict[str, float]:
        if not self.n:
            nan = float("nan")
            return {"mErr_deg": nan, "median_deg": nan, "rmse_deg": nan, "within_11.25": nan,
                    "within_22.5": nan, "within_30": nan}
        c = np.cumsum(self.hist)
        med_bin = int(np.searchsorted(c, self.n / 2.0))
        return {
            "mErr_deg": self.sum / self.n,
            "median_deg": (med_bin + 0.5) / 100.0,
            "rmse_deg": float(np.sqrt(self.sq / self.n)),
            "within_11.25": self.within[11.25] / self.n,
            "within_22.5": self.within[22.5] / self.n,
            "within_30": self.within[30.0] / self.n,
        }


# ----------------------------------------------------------------------------------------------
# boundaries: optimal-dataset-scale F-measure with a matching tolerance


def default_edge_tolerance(height: int, width: int) -> float:
    """max(1, 0.011 * image diagonal) pixels (the NYUD/PASCAL MTL setting, at least 1 pixel)."""
    return max(1.0, EDGE_TOLERANCE_FRACTION * float(np.hypot(height, width)))


def _offsets(tol: float) -> np.ndarray:
    r = int(np.floor(tol))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    keep = dy * dy + dx * dx <= tol * tol + 1e-9
    return np.stack([dy[keep], dx[keep]], axis=1)


def match_edges(pred: np.ndarray, gt: np.ndarray, tol: float, method: str = "bipartite") -> tuple[int, int]:
    """(matched predicted pixels, matched ground-truth pixels) of two binary maps [H,W].

    bipartite: a one-to-one matching of maximum cardinality between predicted and ground-truth
    pixels at Euclidean distance <= tol (both counts equal its size), as BSDS's correspondPixels.
    distance: distance-transform approximation; a predicted pixel is matched if some
    ground-truth pixel lies within tol and vice versa (many-to-one allowed).
    """
    pred = pred.astype(bool)
    gt = gt.astype(bool)
    n_p, n_g = int(pred.sum()), int(gt.sum())
    if n_p == 0 or n_g == 0:
        return 0, 0
    if method == "distance":
        from scipy.ndimage import distance_transform_edt

        dt_gt = distance_transform_edt(~gt)
        dt_pr = distance_transform_edt(~pred)
        return int(np.sum(dt_gt[pred] <= tol + 1e-9)), int(np.sum(dt_pr[gt] <= tol + 1e-9))
    if method != "bipartite":
        raise ValueError(f"unknown edge matching method {method!r}")
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    H, W = gt.shape
    gid = np.full((H, W), -1, np.int64)
    gid[gt] = np.arange(n_g)
    py, px = np.nonzero(pred)
    pid = np.arange(n_p)
    rows, cols = [], []
    for dy, dx in _offsets(tol):
        qy, qx = py + dy, px + dx
        ok = (qy >= 0) & (qy < H) & (qx >= 0) & (qx < W)
        g = np.full(n_p, -1, np.int64)
        g[ok] = gid[qy[ok], qx[ok]]
        hit = g >= 0
        rows.append(pid[hit])
        cols.append(g[hit])
    rows = np.concatenate(rows)
    cols = np.concatenate(cols)
    if rows.size == 0:
        return 0, 0
    graph = csr_matrix((np.ones(rows.size, np.int8), (rows, cols)), shape=(n_p, n_g))
    m = maximum_bipartite_matching(graph, perm_type="column")
    k = int(np.sum(m >= 0))
    return k, k


_NB = ((-1, -1, 8), (-1, 0, 4), (-1, 1, 2), (0, -1, 16), (0, 1, 1), (1, -1, 32), (1, 0, 64), (1, 1, 128))


def _thin_luts():
    try:  # the lookup tables of skimage.morphology.thin (Guo & Hall's two sub-iterations)
        from skimage.morphology._skeletonize import G123_LUT, G123P_LUT

        return np.asarray(G123_LUT, bool), np.asarray(G123P_LUT, bool)
    except Exception:  # noqa: BLE001
        return None


_LUTS = _thin_luts()
if _LUTS is not None and (_LUTS[0][255] or _LUTS[1][255]):  # the front-tracking needs this
    _LUTS = None


def thin_edges(b: np.ndarray) -> np.ndarray:
    """Morphological thinning to 1-pixel-wide curves, identical to skimage.morphology.thin
    (Guo-Hall, as MATLAB's bwmorph(.., 'thin', inf) that BSDS uses).  b: [H,W] or a stack
    [K,H,W] of independent maps.  It visits foreground pixels only and thins a whole stack
    at once, so it is fast on the threshold sweeps of edge evaluation."""
    b = np.asarray(b, bool)
    if _LUTS is None:
        from skimage.morphology import thin

        return thin(b) if b.ndim == 2 else np.stack([thin(x) for x in b])
    single = b.ndim == 2
    if single:
        b = b[None]
    K, H, W = b.shape
    img = np.zeros((K, H + 2, W + 2), np.uint8)
    img[:, 1:-1, 1:-1] = b
    flat = img.ravel()
    offs = [(dy * (W + 2) + dx, w) for dy, dx, w in _NB]
    nb_off = np.array([o for o, _ in offs], np.int64)

    def codes(idx):
        code = np.zeros(idx.size, np.int64)
        for o, w in offs:
            code += w * flat[idx + o]
        return code

    # Only pixels with a background 8-neighbour can be deleted (both tables keep code 255), so
    # track that front: it starts as the boundary and grows by the neighbours of deleted pixels.
    # Maps are independent (no pixel's neighbourhood crosses into another map's padding).
    idx = np.flatnonzero(flat)
    active = np.zeros(flat.size, bool)
    active[idx[codes(idx) != 255]] = True
    idx = np.flatnonzero(active)
    while idx.size:
        changed = False
        for lut in _LUTS:
            d = lut[codes(idx)]
            if d.any():
                gone = idx[d]
                flat[gone] = 0
                active[gone] = False
                nb = (gone[:, None] + nb_off[None, :]).ravel()
                active[nb[flat[nb] == 1]] = True
                idx = np.flatnonzero(active)
                changed = True
        if not changed:
            break
    out = img[:, 1:-1, 1:-1].astype(bool)
    return out[0] if single else out


class _Matcher:
    """Candidate (predicted pixel, ground-truth pixel) pairs within tol, built once per image
    for every pixel that any threshold can switch on; each threshold then matches a subset."""

    def __init__(self, cand: np.ndarray, gt: np.ndarray, tol: float):
        H, W = gt.shape
        self.n_g = int(gt.sum())
        gid = np.full((H, W), -1, np.int64)
        gid[gt] = np.arange(self.n_g)
        py, px = np.nonzero(cand)
        pflat = py * W + px
        rows, cols = [], []
        for dy, dx in _offsets(tol):
            qy, qx = py + dy, px + dx
            ok = (qy >= 0) & (qy < H) & (qx >= 0) & (qx < W)
            g = np.full(py.size, -1, np.int64)
            g[ok] = gid[qy[ok], qx[ok]]
            hit = g >= 0
            rows.append(pflat[hit])
            cols.append(g[hit])
        rows = np.concatenate(rows)
        cols = np.concatenate(cols)
        order = np.lexsort((cols, rows))
        self.rows, self.cols = rows[order], cols[order]

    def match(self, pred: np.ndarray) -> int:
        from scipy.sparse import csr_matrix
        from scipy.sparse.csgraph import maximum_bipartite_matching

        if self.n_g == 0 or self.rows.size == 0:
            return 0
        sel = pred.ravel()[self.rows]
        if not sel.any():
            return 0
        r, c = self.rows[sel], self.cols[sel]
        # rows are sorted: compact them to 0..n-1 and build the CSR arrays directly
        start = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
        indptr = np.r_[start, r.size].astype(np.int32)
        graph = csr_matrix((np.ones(r.size, np.int8), c.astype(np.int32), indptr),
                           shape=(start.size, self.n_g))
        m = maximum_bipartite_matching(graph, perm_type="column")
        return int(np.sum(m >= 0))


def edge_counts(pred_probs, targets, tolerance_px: float | None = None, thresholds=None,
                thin: bool = True, method: str = "bipartite") -> dict[str, np.ndarray]:
    """Per-image, per-threshold matching counts: cnt_p, sum_p, cnt_r (shape [N, K]), sum_r [N].

    With thin=True both the binarised prediction and the target are thinned first (BSDS)."""
    p = _batched(_np(pred_probs).astype(np.float64), 3, "edges")
    g = _batched(_np(targets), 3, "edges")
    _same_shape(p, g, "edges")
    u = np.unique(g)
    if not np.all(np.isin(u, (0, 1))):
        raise ValueError(f"edges: targets must be binary {{0,1}}, found values {u[:8]}")
    th = np.asarray(DEFAULT_THRESHOLDS if thresholds is None else thresholds, np.float64)
    n, H, W = p.shape
    tol = default_edge_tolerance(H, W) if tolerance_px is None else float(tolerance_px)
    cnt_p = np.zeros((n, th.size), np.int64)
    sum_p = np.zeros((n, th.size), np.int64)
    cnt_r = np.zeros((n, th.size), np.int64)
    sum_r = g.reshape(n, -1).astype(bool).sum(axis=1).astype(np.int64)
    for i in range(n):
        gi = g[i].astype(bool)
        if thin:
            gi = thin_edges(gi)
        sum_r[i] = gi.sum()
        matcher = _Matcher(p[i] >= th.min(), gi, tol) if method == "bipartite" else None
        B = p[i][None] >= th[:, None, None]
        if thin:
            B = thin_edges(B)
        for k in range(th.size):
            b = B[k]
            if k and np.array_equal(b, B[k - 1]):
                cnt_p[i, k], sum_p[i, k], cnt_r[i, k] = cnt_p[i, k - 1], sum_p[i, k - 1], cnt_r[i, k - 1]
                continue
            if matcher is not None:
                mp = mr = matcher.match(b)
            else:
                mp, mr = match_edges(b, gi, tol, method)
            cnt_p[i, k], sum_p[i, k], cnt_r[i, k] = mp, int(b.sum()), mr
    return {"cnt_p": cnt_p, "sum_p": sum_p, "cnt_r": cnt_r, "sum_r": sum_r, "thresholds": th}


def _f(prec, rec):
    with np.errstate(invalid="ignore", divide="ignore"):
        f = 2 * prec * rec / (prec + rec)
    return np.where(np.isfinite(f), f, 0.0)


def _pr(cnt_p, sum_p, cnt_r, sum_r):
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(sum_p > 0, cnt_p / np.maximum(sum_p, 1), 1.0)  # no prediction: P = 1
        rec = np.where(sum_r > 0, cnt_r / np.maximum(sum_r, 1), 1.0)  # no boundary: R = 1
    return prec, rec


def edge_odsf(pred_probs, targets, tolerance_px: float | None = None, thresholds=None,
              thin: bool = True, method: str = "bipartite") -> float:
    """Optimal-dataset-scale F-measure (docs/metrics.md): counts summed over the images at each
    threshold, F = 2PR/(P+R), maximum over thresholds."""
    m = EdgeMeter(tolerance_px=tolerance_px, thresholds=thresholds, thin=thin, method=method)
    m.update(pred_probs, targets)
    return m.compute()["odsF"]


class EdgeMeter:
    def __init__(self, tolerance_px: float | None = None, thresholds=None, thin: bool = True,
                 method: str = "bipartite"):
        self.tolerance_px = tolerance_px
        self.thresholds = np.asarray(DEFAULT_THRESHOLDS if thresholds is None else thresholds, np.float64)
        self.thin = thin
        self.method = method
        self.reset()

    def reset(self):
        k = self.thresholds.size
        self.cnt_p = np.zeros(k, np.int64)
        self.sum_p = np.zeros(k, np.int64)
        self.cnt_r = np.zeros(k, np.int64)
        self.sum_r = 0
        self.ois_sum = 0.0
        self.n_images = 0

    def update(self, pred, target):
        c = edge_counts(pred, target, self.tolerance_px, self.thresholds, self.thin, self.method)
        self.cnt_p += c["cnt_p"].sum(axis=0)
        self.sum_p += c["sum_p"].sum(axis=0)
        self.cnt_r += c["cnt_r"].sum(axis=0)
        self.sum_r += int(c["sum_r"].sum())
        pi, ri = _pr(c["cnt_p"], c["sum_p"], c["cnt_r"], c["sum_r"][:, None])
        self.ois_sum += float(_f(pi, ri).max(axis=1).sum())
        self.n_images += c["cnt_p"].shape[0]

    def curve(self):
        prec, rec = _pr(self.cnt_p, self.sum_p, self.cnt_r, self.sum_r)
        return self.thresholds, prec, rec, _f(prec, rec)

    def compute(self) -> dict[str, float]:
        if not self.n_images:
            return {"odsF": float("nan"), "odsP": float("nan"), "odsR": float("nan"),
                    "ods_threshold": float("nan"), "oisF": float("nan")}
        th, prec, rec, f = self.curve()
        k = int(np.argmax(f))
        return {"odsF": float(f[k]), "odsP": float(prec[k]), "odsR": float(rec[k]),
                "ods_threshold": float(th[k]), "oisF": self.ois_sum / self.n_images}


# ----------------------------------------------------------------------------------------------
# saliency


class SaliencyMeter:
    """maxF: TP/PP/AP per threshold summed over all valid pixels of the data set,
    F_beta = (1 + b2) P R / (b2 P + R), maximum over thresholds (b2 = 0.3)."""

    def __init__(self, beta2: float = 0.3, thresholds=None, ignore_index: int = IGNORE_INDEX):
        self.beta2 = float(beta2)
        self.thresholds = np.asarray(DEFAULT_THRESHOLDS if thresholds is None else thresholds, np.float64)
        self.ignore_index = ignore_index
        self.reset()

    def reset(self):
        k = self.thresholds.size
        self.tp = np.zeros(k, np.int64)
        self.pp = np.zeros(k, np.int64)
        self.ap = 0
        self.n = 0

    def update(self, pred, target):
        p = _np(pred).astype(np.float64)
        t = _np(target)
        _same_shape(p, t, "sal")
        valid = t != self.ignore_index
        tv = t[valid]
        u = np.unique(tv)
        if not np.all(np.isin(u, (0, 1))):
            raise ValueError(f"sal: targets must be binary {{0,1}} (or {self.ignore_index}), found {u[:8]}")
        pv = p[valid]
        tb = tv.astype(bool)
        # counts per threshold via sorting: #pred >= th, #(pred >= th and target)
        ps = np.sort(pv)
        pt = np.sort(pv[tb])
        self.pp += ps.size - np.searchsorted(ps, self.thresholds, side="left")
        self.tp += pt.size - np.searchsorted(pt, self.thresholds, side="left")
        self.ap += int(tb.sum())
        self.n += int(pv.size)

    def compute(self) -> dict[str, float]:
        if not self.n:
            return {"maxF": float("nan"), "maxF_threshold": float("nan")}
        with np.errstate(invalid="ignore", divide="ignore"):
            prec = self.tp / np.maximum(self.pp, 1)
            rec = self.tp / max(self.ap, 1)
            f = (1 + self.beta2) * prec * rec / (self.beta2 * prec + rec)
        f = np.where(np.isfinite(f), f, 0.0)
        k = int(np.argmax(f))
        return {"maxF": float(f[k]), "maxF_threshold": float(self.thresholds[k])}


def saliency_maxf(pred, target, beta2: float = 0.3, thresholds=None) -> float:
    m = SaliencyMeter(beta2=beta2, thresholds=thresholds)
    m.update(pred, target)
    return m.compute()["maxF"]


# ----------------------------------------------------------------------------------------------


def make_meter(task: str, num_classes: int | None = None, **kwargs):
    """Streaming meter for `task`: .update(pred, target) per batch, .compute() -> dict.

    semseg / human_parts: SemsegMeter (num_classes required; human_parts defaults to 7);
    depth: DepthMeter; normals: NormalsMeter; edges: EdgeMeter (tolerance_px, thresholds,
    thin, method); sal: SaliencyMeter (beta2, thresholds).
    """
    if task == "semseg":
        if num_classes is None:
            raise ValueError("make_meter('semseg') needs num_classes")
        return SemsegMeter(num_classes, **kwargs)
    if task == "human_parts":
        return SemsegMeter(num_classes or 7, **kwargs)
    if task == "depth":
        return DepthMeter(**kwargs)
    if task == "normals":
        return NormalsMeter(**kwargs)
    if task in ("edges", "edge"):
        return EdgeMeter(**kwargs)
    if task in ("sal", "saliency"):
        return SaliencyMeter(**kwargs)
    raise ValueError(f"unknown task {task!r}; expected one of {sorted(PRIMARY_METRIC)}")


__all__: Sequence[str] = [
    "PRIMARY_METRIC",
    "confusion_matrix",
    "iou_from_confusion",
    "per_class_iou",
    "miou",
    "depth_rmse",
    "normal_angles_deg",
    "normal_mean_angle_error",
    "match_edges",
    "edge_counts",
    "edge_odsf",
    "saliency_maxf",
    "make_meter",
    "SemsegMeter",
    "DepthMeter",
    "NormalsMeter",
    "EdgeMeter",
    "SaliencyMeter",
]
