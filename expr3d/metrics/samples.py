"""The `samples` pseudo-metric: --num_samples test faces of DIFFERENT identities, translated to every target, for
the Fig. 5 sample grid.

Sources are chosen in test-split order, one per identity (examples of unknown identity, -1, each count as their
own), the k-th preferring source expression k mod 8 among its identity's faces in the same batch - so a paired test
split (every identity under all eight expressions, stored identity by identity) gives different people with
different source expressions, not one person eight times. When the split has fewer identities than --num_samples,
the remaining rows are filled with further faces in test-split order.
"""
import numpy as np

from expr3d.metrics.registry import Metric, register_metric


@register_metric("samples", description="--num_samples test faces of different identities translated to every "
                                        "target, with G_depth's estimated depth (the Fig. 5 sample grid)")
class Samples(Metric):
    def __init__(self):
        self._inputs, self._input_depth, self._identity, self._rank = [], [], [], []
        self._fakes, self._fake_depth = {}, {}
        self._seen = set()
        self._chosen = 0
        self._spares = 0
        self._index = 0
        self._rows = np.zeros([0], np.int64)

    def setup(self, context):
        self.limit = int(context.options.get("num_samples", 8))
        self.targets = list(context.target_classes)
        self.with_depth = context.has_depth_networks

    def _pick(self, batch):
        """Rows of `batch` to keep and their ranks (chosen sources first, then spares in test-split order)."""
        identities = np.asarray(getattr(batch, "identity", np.full(batch.size, -1)))
        expressions = np.asarray(batch.expression)
        people = [int(p) if int(p) >= 0 else ("unknown", self._index + i) for i, p in enumerate(identities)]
        ranks = {}
        for i, person in enumerate(people):
            if person in self._seen or self._chosen >= self.limit:
                continue
            self._seen.add(person)
            rows = [j for j in range(i, len(people)) if people[j] == person]
            preferred = [j for j in rows if expressions[j] == self._chosen % 8]
            ranks[(preferred or rows)[0]] = self._chosen
            self._chosen += 1
        for i in range(len(people)):
            if i not in ranks and self._spares < self.limit:
                ranks[i] = self.limit + self._spares
                self._spares += 1
        self._index += len(people)
        rows = np.asarray(sorted(ranks), np.int64)
        return rows, np.asarray([ranks[r] for r in rows], np.int64)

    def update_real(self, batch):
        self._rows, ranks = self._pick(batch)
        if not len(self._rows):
            return
        self._rank.append(ranks)
        self._inputs.append(batch.image[self._rows])
        self._identity.append(np.asarray(getattr(batch, "identity", np.full(batch.size, -1)))[self._rows])
        if self.with_depth:
            self._input_depth.append(batch.real_geometry_estimate[self._rows].mean(axis=-1, keepdims=True))

    def update(self, step):
        if not len(self._rows):
            return
        self._fakes.setdefault(step.target, []).append(step.fake[self._rows])
        if self.with_depth:
            self._fake_depth.setdefault(step.target, []).append(
                step.fake_geometry[self._rows].mean(axis=-1, keepdims=True))

    def _order(self):
        return np.argsort(np.concatenate(self._rank), kind="stable")[:self.limit] if self._rank else np.zeros([0], int)

    def result(self):
        identities = np.concatenate(self._identity)[self._order()] if self._identity else np.zeros([0], int)
        known = identities[identities >= 0]
        return {"samples_count": int(len(identities)),
                "samples_identities": int(len(set(known.tolist())) + np.sum(identities < 0))}

    def arrays(self):
        if not self._inputs:
            return {}
        order = self._order()
        out = {"inputs": np.concatenate(self._inputs)[order].astype(np.float16),
               "identity": np.concatenate(self._identity)[order].astype(np.int64),
               "targets": np.asarray(self.targets, np.int32),
               "fakes": np.stack([np.concatenate(self._fakes[t])[order] for t in self.targets],
                                 axis=1).astype(np.float16)}
        if self.with_depth:
            out["input_depth"] = np.concatenate(self._input_depth)[order].astype(np.float16)
            out["fake_depth"] = np.stack([np.concatenate(self._fake_depth[t])[order] for t in self.targets],
                                         axis=1).astype(np.float16)
        return out
