"""Flooding belief-propagation decoding of 5G LDPC code words, bit-exact with Sionna's ``LDPC5GDecoder``.

:class:`FloodingBP` runs the same arithmetic as ``sionna.phy.fec.ldpc.LDPC5GDecoder`` (boxplus-phi check node
update, sum variable node update, LLR clipping at ``llr_max``, flooding schedule, rate recovery of punctured,
filler and shortened bits) on the decoder's own parity-check graph, and gives the same float32 messages and so
the same decisions, bit for bit, in fewer and cheaper tensor operations:

* messages live in an edge-major ``[E, B]`` layout (E edges, B code words) grouped by node degree, each group
  stored slot by slot, so that node sums are additions of contiguous slices instead of gathers into arrays
  padded to the largest degree (Sionna pads the check nodes to their largest degree and the variable nodes to
  theirs, 1.6 and 2.6 times the edges of the k = 1024 rate-1/2 code, and gathers and scatters through
  32-bit index arrays four times per iteration); two permutations per iteration move the messages between the
  check-node and the variable-node grouping;
* :math:`\\phi(x) = \\log(e^x + 1) - \\log(e^x - 1)` evaluates :math:`e^x` once (Sionna twice, with the same
  result); the check node output sign is a parity of the incoming signs;
* a pool of code words is decoded together; a word leaves it when it is done (its ``accept`` check passes at
  a check point, or ``num_iter`` iterations) and a waiting word takes its place, so that the batch stays
  full while the stragglers of the waterfall run all their iterations.

**Exactness.** Element-wise operations do not depend on the layout. The sums over the incoming messages of a
node are the ones that ``torch.sum(dim=-1)`` computes on Sionna's padded ``[B, nodes, D]`` arrays: their order
of additions is that of ATen's CPU ``cascade_sum`` kernel (vectorised inner sum for rows of at least one
vector, ILP-4 ``row_sum`` otherwise), reproduced by :func:`sum_tree`. The order depends on the vector width of
the build and machine, so each decoder checks its trees against ``torch.sum`` on the padded shapes it needs
(random data, every node degree) when it is built, and where none matches (another device, another kernel)
it falls back to ``torch.sum`` on a padded copy, exact by construction (slower).

Iterations resume exactly: a word checked every ``check_every`` iterations gets the same messages as one that
runs all of them in one go, as with Sionna's ``msg_v2c`` state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

#: clipping of :math:`\phi`'s argument in Sionna's ``cn_update_phi`` (float32)
PHI_MIN, PHI_MAX = 8.5e-8, 16.635532

_ZERO = None  # an exact zero of the symbolic sums
_ABS = (1 << 31) - 1  # all bits of a float32 but its sign, as int32


# ---------------------------------------------------------------------------------------------------- sum order
def _add(a, b):
    if a is _ZERO:
        return b
    if b is _ZERO:
        return a
    return (a, b)


def _ceil_log2(x: int) -> int:
    return 0 if x <= 1 else (x - 1).bit_length()


def _multi_row_sum(rows: list[list], nrows: int) -> list:
    """ATen ``multi_row_sum`` on symbolic values: ``rows`` is a list of ``nrows``-long lists."""
    size = len(rows)
    num_levels = 4
    level_power = max(4, _ceil_log2(size) // num_levels)
    level_step = 1 << level_power
    level_mask = level_step - 1
    acc = [[_ZERO] * nrows for _ in range(num_levels)]
    i = 0
    while i + level_step <= size:
        for _ in range(level_step):
            for k in range(nrows):
                acc[0][k] = _add(acc[0][k], rows[i][k])
            i += 1
        for j in range(1, num_levels):
            for k in range(nrows):
                acc[j][k] = _add(acc[j][k], acc[j - 1][k])
                acc[j - 1][k] = _ZERO
            if i & (level_mask << (j * level_power)):
                break
    for i in range(i, size):
        for k in range(nrows):
            acc[0][k] = _add(acc[0][k], rows[i][k])
    for j in range(1, num_levels):
        for k in range(nrows):
            acc[0][k] = _add(acc[0][k], acc[j][k])
    return acc[0]


def _row_sum(vals: list):
    """ATen ``row_sum`` (ILP factor 4) on a list of symbolic values."""
    ilp = 4
    n = len(vals)
    size_ilp = n // ilp
    partial = _multi_row_sum([vals[i * ilp: (i + 1) * ilp] for i in range(size_ilp)], ilp)
    for i in range(size_ilp * ilp, n):
        partial[0] = _add(partial[0], vals[i])
    for k in range(1, ilp):
        partial[0] = _add(partial[0], partial[k])
    return partial[0]


def sum_tree(degree: int, padded: int, vec: int):
    """The order in which ATen's CPU ``sum(dim=-1)`` adds a contiguous row of ``padded`` float32 values whose
    first ``degree`` are the node's messages and the rest exact zeros, with ``vec`` lanes per vector.

    Returns a binary tree of slot indices: an ``int`` (one slot) or a pair ``(left, right)`` (left + right).
    """
    row = [j if j < degree else _ZERO for j in range(padded)]
    if padded >= vec:  # vectorized_inner_sum
        nvec = padded // vec
        lanes = [_row_sum([row[c * vec + lane] for c in range(nvec)]) for lane in range(vec)]
        acc = _ZERO
        for k in range(nvec * vec, padded):
            acc = _add(acc, row[k])
        for lane in lanes:
            acc = _add(acc, lane)
    else:  # scalar_inner_sum
        acc = _row_sum(row)
    if acc is _ZERO:
        raise ValueError("a node without edges")
    return acc


def _eval_tree(tree, slot: Callable[[int], torch.Tensor]) -> torch.Tensor:
    if isinstance(tree, int):
        return slot(tree)
    a, b = tree
    return torch.add(_eval_tree(a, slot), _eval_tree(b, slot))


def _eval_parity(degree: int, slot: Callable[[int], torch.Tensor]) -> torch.Tensor:
    out = slot(0)
    for j in range(1, degree):
        out = torch.logical_xor(out, slot(j))
    return out


def _trees_match(trees: dict[int, object], padded: int, device: torch.device, trials: int = 64) -> bool:
    """Do the trees reproduce ``torch.sum`` of padded rows bit for bit (random magnitudes over 12 decades)?"""
    g = torch.Generator().manual_seed(1234)
    for d, tree in trees.items():
        x = torch.zeros(trials, 1, padded)
        x[..., :d] = torch.exp(torch.rand(trials, 1, d, generator=g) * 28 - 14) * torch.sign(
            torch.randn(trials, 1, d, generator=g))
        x = x.to(device)
        ref = x.sum(dim=-1)[:, 0]
        mine = _eval_tree(tree, lambda j: x[:, 0, j])
        if not torch.equal(ref, mine):
            return False
    return True


# ---------------------------------------------------------------------------------------------------- graph
@dataclass
class _Groups:
    """Nodes of one kind grouped by degree; a group's messages are stored slot-major: slot j of node i of the
    group is row ``offset + j * count + i`` of the edge-major message array."""

    degrees: list[int]
    counts: list[int]
    offsets: list[int]  # first edge row of each group
    node_offsets: list[int]  # first node row of each group (nodes in group order)
    trees: dict[int, object] | None  # per degree, None: padded torch.sum fallback
    padded: int  # largest degree (Sionna's padding)
    pad_index: torch.Tensor | None = None  # [nodes, padded] edge rows (E: a zero row), fallback only


def _group(slots: list[np.ndarray], vec: int | None) -> tuple[_Groups, np.ndarray, np.ndarray]:
    """Group nodes by degree. ``slots[v]``: the edges (original numbering) of node v in Sionna's order.

    Returns the groups, the edge of every row of the grouped layout and the node of every grouped node row.
    """
    deg = np.array([len(e) for e in slots])
    degrees = sorted(set(deg.tolist()))
    rows, nodes, counts, offsets, node_offsets = [], [], [], [], []
    off = noff = 0
    for d in degrees:
        members = np.flatnonzero(deg == d)
        edges = np.stack([slots[v] for v in members])  # [count, d]
        rows.append(edges.T.reshape(-1))  # slot-major
        nodes.append(members)
        counts.append(len(members))
        offsets.append(off)
        node_offsets.append(noff)
        off += edges.size
        noff += len(members)
    padded = int(deg.max())
    trees = None
    if vec is not None:
        trees = {d: sum_tree(d, padded, vec) for d in degrees}
    g = _Groups(degrees, counts, offsets, node_offsets, trees, padded)
    return g, np.concatenate(rows), np.concatenate(nodes)


def _pick_trees(slots: list[np.ndarray], device: torch.device) -> int | None:
    """The vector width whose ATen sum order matches ``torch.sum`` on ``device``, or None."""
    deg = sorted({len(e) for e in slots})
    padded = max(deg)
    for vec in (8, 16, 4, 32):
        trees = {d: sum_tree(d, padded, vec) for d in deg}
        if _trees_match(trees, padded, device):
            return vec
    return None


class FloodingBP:
    r"""Bit-exact, faster replacement for the BP iterations of a Sionna ``LDPC5GDecoder`` (see the module
    docstring).

    :param dec: the ``LDPC5GDecoder`` (``cn_update="boxplus-phi"``, ``vn_update="sum"``, flooding schedule, no
        callbacks, no HARQ mode); its graph, pruning and clipping are used as they are.
    :param exact_sums: ``"auto"`` (default): reproduce ATen's summation order where verified, else fall back to
        padded ``torch.sum``; ``"padded"``: always the fallback.

    :input llr (``decode``): [R, n] rate-matched channel LLRs in Sionna's convention (ln P(1)/P(0)).
    :output: [R, k] hard decisions of the k information bits (float 0/1) and, with ``accept``, [R] bool: the
        ``accept`` result of each word's last check.
    """

    def __init__(self, dec, exact_sums: str = "auto"):
        if exact_sums not in ("auto", "padded"):
            raise ValueError("exact_sums must be 'auto' or 'padded'")
        if getattr(dec, "_scheduling", "flooding") != "flooding" or dec._v2c_callbacks or dec._c2v_callbacks:
            raise ValueError("FloodingBP reproduces the flooding schedule without callbacks only")
        if getattr(dec, "_harq_mode", False):
            raise ValueError("FloodingBP does not support the HARQ mode")
        from sionna.phy.fec.ldpc.decoding import cn_update_phi, vn_update_sum

        if dec._cn_update is not cn_update_phi or dec._vn_update is not vn_update_sum:
            raise ValueError("FloodingBP reproduces cn_update='boxplus-phi' and vn_update='sum' only")
        self.dec = dec
        self.enc = dec.encoder
        self.device = torch.device(dec.device) if dec.device is not None else torch.device("cpu")
        self.llr_max = dec._llr_max
        self.k = self.enc.k
        self.num_vns = dec._num_vns
        self.num_edges = dec._num_edges
        dev = self.device

        vn_idx = np.asarray(dec._vn_idx)
        v2c_perm = dec._v2c_perm.cpu().numpy().astype(np.int64)
        cn_rs = dec._cn_row_splits.cpu().numpy().astype(np.int64)
        vn_rs = dec._vn_row_splits.cpu().numpy().astype(np.int64)
        cn_slots = [v2c_perm[cn_rs[c]: cn_rs[c + 1]] for c in range(dec._num_cns)]  # edges of CN c, Sionna's order
        vn_slots = [np.arange(vn_rs[v], vn_rs[v + 1]) for v in range(self.num_vns)]
        vec_c = _pick_trees(cn_slots, dev) if exact_sums == "auto" else None
        vec_v = _pick_trees(vn_slots, dev) if exact_sums == "auto" else None
        self.cn, cn_edge, _ = _group(cn_slots, vec_c)
        self.vn, vn_edge, vn_node = _group(vn_slots, vec_v)
        e = self.num_edges
        pos_c = np.empty(e, np.int64)
        pos_c[cn_edge] = np.arange(e)
        pos_v = np.empty(e, np.int64)
        pos_v[vn_edge] = np.arange(e)
        vrow = np.empty(self.num_vns, np.int64)  # VN -> its row in the grouped VN order
        vrow[vn_node] = np.arange(self.num_vns)
        #: Sionna's edge index (its ``msg_v2c`` column) of every message row (check-node order)
        self.edges = torch.from_numpy(cn_edge)
        self._cn2vn = torch.from_numpy(pos_c[vn_edge]).to(dev)  # c2v_vn = c2v_cn[_cn2vn]
        self._vn2cn = torch.from_numpy(pos_v[cn_edge]).to(dev)  # v2c_cn = v2c_vn[_vn2cn]
        self._vn_of_cn_row = torch.from_numpy(vrow[vn_idx[cn_edge]]).to(dev)  # grouped VN row of each CN-order edge
        self._vn_order = torch.from_numpy(vn_node).to(dev)  # original VN of each grouped VN row
        self._info_rows = torch.from_numpy(vrow[: self.k]).to(dev)
        for grp, edge in ((self.cn, cn_edge), (self.vn, vn_edge)):
            if grp.trees is None:  # padded fallback: edge rows of every node, slot by slot, padded with row E
                idx = np.full((sum(grp.counts), grp.padded), e, np.int64)
                for d, cnt, off, noff in zip(grp.degrees, grp.counts, grp.offsets, grp.node_offsets):
                    idx[noff: noff + cnt, :d] = (off + np.arange(d)[None, :] * cnt + np.arange(cnt)[:, None])
                grp.pad_index = torch.from_numpy(idx).to(dev)
        self.exact = "ordered" if (vec_c is not None and vec_v is not None) else "padded"

    # ------------------------------------------------------------------ pieces
    def channel_llrs(self, llr: torch.Tensor) -> torch.Tensor:
        """[R, n] rate-matched LLRs (ln P(1)/P(0)) -> [nV, R] LLRs ln P(0)/P(1) of the pruned mother code word
        in grouped VN order, as ``LDPC5GDecoder.call`` builds them (clipped at ``llr_max``)."""
        enc, dec = self.enc, self.dec
        n, k, z, k_filler = enc.n, enc.k, enc.z, enc.k_filler
        x = llr.reshape(-1, n).to(self.device, torch.float32)
        b = x.shape[0]
        if enc.num_bits_per_symbol is not None:
            x = x[:, enc.out_int_inv]
        buf_len = enc.n_cb_comp - dec._nb_pruned_nodes
        buf = torch.nn.functional.pad(x, (0, buf_len - n))
        filler = dec._FILLER_LLR if self.llr_max is None else self.llr_max
        full = torch.cat([torch.zeros(b, 2 * z, device=self.device), buf[:, : k - 2 * z],
                          -filler * torch.ones(b, k_filler, device=self.device), buf[:, k - 2 * z:]], dim=1)
        if self.llr_max is not None:
            full = full.clamp(-self.llr_max, self.llr_max)
        full = full * -1.0
        return full.t()[self._vn_order].contiguous()

    def _node_sums(self, grp: _Groups, msg: torch.Tensor) -> list[torch.Tensor]:
        """Per group, [count, B] sums over the slots of ``msg`` ([E, B], grouped layout), in Sionna's order."""
        out = []
        if grp.trees is None:
            ext = torch.cat([msg, torch.zeros(1, msg.shape[1], dtype=msg.dtype, device=msg.device)])
            s = ext[grp.pad_index].permute(2, 0, 1).contiguous().sum(dim=-1).t()  # [nodes, B]
            for cnt, noff in zip(grp.counts, grp.node_offsets):
                out.append(s[noff: noff + cnt])
            return out
        for d, cnt, off in zip(grp.degrees, grp.counts, grp.offsets):
            out.append(_eval_tree(grp.trees[d], lambda j, o=off, c=cnt: msg[o + j * c: o + (j + 1) * c]))
        return out

    @staticmethod
    def _phi(x: torch.Tensor) -> torch.Tensor:
        """Sionna's float32 :math:`\\phi` (the same operations, :math:`e^x` computed once); overwrites ``x``."""
        x.clamp_(PHI_MIN, PHI_MAX)
        e = torch.exp(x, out=x)
        a = torch.add(e, 1.0).log_()
        return a.sub_(e.sub_(1.0).log_())

    def iterate(self, v2c: torch.Tensor, llr: torch.Tensor, num_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``num_iter`` flooding iterations. ``v2c``: [E, B] messages (CN order, ln P(0)/P(1); overwritten);
        ``llr``: [nV, B] channel LLRs (grouped VN order). Returns the new ``v2c`` and the a-posteriori LLRs
        [nV, B] (clipped at ``llr_max``) after the last iteration."""
        cn, vn, lm = self.cn, self.vn, self.llr_max
        tot: list[torch.Tensor] = []
        for _ in range(num_iter):
            # ---- check nodes (cn_update_phi). Signs as bits of the float32 words: -0.0 + 0.0 = +0.0 counts as
            # positive, as torch.sign's 0 does in Sionna; the output sign is the parity of the other inputs'.
            vi = v2c.add_(0.0).view(torch.int32)
            neg = torch.bitwise_right_shift(vi, 31)  # -1 where negative, else 0
            phi = self._phi(torch.bitwise_and(vi, _ABS).view(torch.float32))
            ext = torch.empty_like(phi)
            for d, cnt, off, s in zip(cn.degrees, cn.counts, cn.offsets, self._node_sums(cn, phi)):
                seg = slice(off, off + d * cnt)
                torch.sub(s.unsqueeze(0), phi[seg].view(d, cnt, -1), out=ext[seg].view(d, cnt, -1))
                ng = neg[seg].view(d, cnt, -1)
                count = torch.sum(ng, dim=0, dtype=torch.int32)  # minus the number of negative inputs
                ng.bitwise_xor_(count.unsqueeze(0))  # lowest bit: own sign xor parity = the output sign
            c2v = self._phi(ext)  # > 0
            c2v.view(torch.int32).bitwise_or_(neg.bitwise_and_(1).bitwise_left_shift_(31))
            if lm is not None and lm < PHI_MAX:  # |phi| <= phi(PHI_MIN) < 16.7: a no-op otherwise
                c2v.clamp_(-lm, lm)
            # ---- variable nodes (vn_update_sum)
            c2v = c2v.index_select(0, self._cn2vn)
            v2c_v = torch.empty_like(c2v)
            tot = []
            for d, cnt, off, noff, s in zip(vn.degrees, vn.counts, vn.offsets, vn.node_offsets,
                                            self._node_sums(vn, c2v)):
                t = torch.add(s, llr[noff: noff + cnt])
                seg = slice(off, off + d * cnt)
                torch.sub(t.unsqueeze(0), c2v[seg].view(d, cnt, -1), out=v2c_v[seg].view(d, cnt, -1))
                tot.append(t)
            if lm is not None:
                v2c_v.clamp_(-lm, lm)
            v2c = v2c_v.index_select(0, self._vn2cn)
        x_tot = torch.cat(tot) if num_iter > 0 else llr.clone()
        if lm is not None:
            x_tot.clamp_(-lm, lm)
        return v2c, x_tot

    def info_bits(self, x_tot: torch.Tensor) -> torch.Tensor:
        """[nV, B] a-posteriori LLRs -> [B, k] hard decisions (float 0/1) of the information bits."""
        return (x_tot[self._info_rows] <= 0).t().to(torch.float32)

    # ------------------------------------------------------------------ decoding
    @torch.no_grad()
    def decode(self, llr: torch.Tensor, num_iter: int, pool: int = 32, check_every: int = 2,
               accept: Callable[[torch.Tensor], torch.Tensor] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decode the R code words of ``llr``, at most ``pool`` at a time.

        A word is checked every ``check_every`` of its iterations and after its last one; with ``accept`` (a
        callable [b, k] bits -> [b] bool, e.g. a CRC check) it leaves at the first check that passes, its
        place taken by the next waiting word. Without ``accept`` every word gets ``num_iter`` iterations.
        """
        r = llr.shape[0]
        bits = torch.zeros(r, self.k, device=self.device)
        ok = torch.zeros(r, dtype=torch.bool, device=self.device) if accept is not None else None
        if r == 0:
            return bits, ok
        step = max(1, int(check_every)) if accept is not None else max(1, num_iter)
        pool = max(1, int(pool))
        nxt = 0
        words = torch.zeros(0, dtype=torch.int64)
        done = torch.zeros(0, dtype=torch.int64)
        v2c = torch.zeros(self.num_edges, 0, device=self.device)
        lch = torch.zeros(self.num_vns, 0, device=self.device)
        while nxt < r or words.numel():
            if words.numel() < pool and nxt < r:  # refill
                new = torch.arange(nxt, min(r, nxt + pool - words.numel()))
                nxt += new.numel()
                ln = self.channel_llrs(llr[new.to(llr.device)])
                v2c = torch.cat([v2c, ln.index_select(0, self._vn_of_cn_row)], dim=1)
                lch = torch.cat([lch, ln], dim=1)
                words = torch.cat([words, new])
                done = torch.cat([done, torch.zeros_like(new)])
            if num_iter <= 0:
                x_tot, at_check = lch, torch.ones_like(words, dtype=torch.bool)
                finished = at_check
            else:
                nxt_check = torch.clamp((done // step + 1) * step, max=num_iter)
                t = int((nxt_check - done).min())
                v2c, x_tot = self.iterate(v2c, lch, t)
                done = done + t
                at_check = done == nxt_check
                finished = done >= num_iter
            idx = torch.nonzero(at_check).flatten()
            if idx.numel():
                u = self.info_bits(x_tot[:, idx.to(x_tot.device)])
                w = words[idx].to(self.device)
                bits[w] = u
                if accept is not None:
                    valid = accept(u).reshape(-1).to(torch.bool)
                    ok[w] = valid
                    finished = finished.clone()
                    finished[idx] |= valid.cpu()
            if bool(finished.any()):
                keep = torch.nonzero(~finished).flatten()
                kd = keep.to(self.device)
                v2c, lch = v2c.index_select(1, kd), lch.index_select(1, kd)
                words, done = words[keep], done[keep]
        return bits, ok

