"""The tests' independent reference for a smoothed loss, defined once: the perturbed
losses and their gradients computed one draw at a time on deep copies of the model,
the weights shifted in place, one backward pass each (no vectorisation, no reduction).
Test modules import it as ``from perturbed_copies import per_draw``."""

from __future__ import annotations

import copy

import torch


def per_draw(model, ple, x, t, deltas):
    """Losses ``L`` (shape ``(S,)``, ``S = y + include_centre``) and per-draw gradients
    (a list of ``{name: grad}``) of ``ple.base_loss`` at the weights shifted by
    ``deltas`` (``ple.sample(...)``: ``{name: (y, *shape)}``; the centre first when
    ``ple.include_centre``)."""
    s = ple.y + int(ple.include_centre)
    losses, grads = [], []
    for i in range(s):
        a = i - 1 if ple.include_centre else i
        m = copy.deepcopy(model)
        with torch.no_grad():
            for n, p in m.named_parameters():
                if n in deltas and a >= 0:
                    p.add_(deltas[n][a])
        loss = ple.base_loss(m(x), t)
        m.zero_grad()
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    return torch.stack(losses), grads
