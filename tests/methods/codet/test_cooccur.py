"""CoDet's co-occurrence: text-guided similarities against a hand computation, the baselines'
choices, and Phi learning to pick the region that recurs across a group."""

import pytest
import torch
import torch.nn.functional as F

from ovdet.losses.codet import PRIOR_BIAS, image_caption_loss, region_word_loss
from ovdet.methods.codet.cooccur import (
    CoOccurrence,
    group_similarity,
    hard_share,
    harden,
    parameter_free,
    prototypes,
    region_weights,
    straight_through,
    text_guidance,
)
from ovdet.methods.codet.train import CoDetTrainConfig


def test_text_guidance_weights_are_the_magnitudes_over_their_mean():
    t = torch.tensor([0.5, -1.0, 0.0, 2.5])
    torch.testing.assert_close(text_guidance(t), torch.tensor([0.5, 1.0, 0.0, 2.5]))


def test_group_similarity_matches_a_hand_loop():
    torch.manual_seed(0)
    g, r, d = 3, 4, 5
    f = torch.randn(g, r, d)
    w = text_guidance(torch.randn(d))
    sim = group_similarity(f, w)
    assert sim.shape == (g, r, (g - 1) * r)
    fhat = F.normalize(f, dim=-1)
    for i in range(g):
        others = [j for j in range(g) if j != i]
        for a in range(r):
            for jj, j in enumerate(others):
                for b in range(r):
                    want = sum(float(w[k] * fhat[i, a, k] * fhat[j, b, k]) for k in range(d))
                    assert abs(float(sim[i, a, jj * r + b]) - want) < 1e-5
    plain = group_similarity(f, None)
    torch.testing.assert_close(plain[0, 1, 2], (fhat[0, 1] * fhat[1, 2]).sum())


def _planted_groups(n_groups, g=4, r=6, d=16, seed=0):
    """Random regions; one random region of every image of a group is the group's concept
    vector plus noise. Returns features (n, g, r, d), the planted index (n, g), concepts (n, d)."""
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(n_groups, g, r, d, generator=gen)
    concept = F.normalize(torch.randn(n_groups, d, generator=gen), dim=-1)
    where = torch.randint(r, (n_groups, g), generator=gen)
    for n in range(n_groups):
        for i in range(g):
            features[n, i, where[n, i]] = 3 * concept[n] + 0.3 * torch.randn(d, generator=gen)
    return features, where, concept


def test_parameter_free_choice_finds_the_planted_region():
    """Each image's last region is its whole-image box; here it is the same vector in every image
    of a group (it co-occurs perfectly), yet no rule may choose it: the rules read the
    proposals only, as the official code does, and give the whole image 0."""
    features, where, concept = _planted_groups(50)
    whole = torch.randn(50, 1, 1, 16).expand(50, 4, 1, 16)
    features = torch.cat([features, 5 * whole], 2)  # (n, g, 7, d)
    boxes = torch.zeros(4, 7, 4)
    phi = CoOccurrence(3 * 6, 6)
    weights = [
        region_weights(m, f, boxes, c, phi)
        for f, c in zip(features, concept, strict=True)
        for m in ("parameter-free", "codet")
    ]
    for p in weights:
        assert p.shape == (4, 7) and torch.equal(p[:, -1], torch.zeros(4))
        torch.testing.assert_close(p.sum(-1), torch.ones(4))
    picked = torch.stack(weights[::2]).argmax(-1)
    assert (picked == where).float().mean() > 0.95
    with pytest.raises(ValueError, match="need Phi"):
        region_weights("codet", features[0], boxes, concept[0], None)


def test_phi_learns_to_pick_the_co_occurring_region():
    """Trained only through the region-word objective on soft prototypes (no region labels),
    Phi's argmax lands on the planted region of unseen groups far above chance (1 in 6) and
    above its untrained start."""
    torch.manual_seed(0)
    g, r = 4, 6
    phi = CoOccurrence((g - 1) * r, r)
    opt = torch.optim.Adam(phi.parameters(), lr=1e-2)

    def accuracy(features, where, concept):
        with torch.no_grad():
            p = torch.stack([phi(group_similarity(f, None)) for f in features])
        return float((p.argmax(-1) == where).float().mean())

    test = _planted_groups(100, seed=1)
    before = accuracy(*test)
    for step in range(150):
        features, _, concept = _planted_groups(16, seed=100 + step)
        p = torch.stack([phi(group_similarity(f, None)) for f in features])  # (n, g, r)
        f_p = torch.stack([prototypes(f, q) for f, q in zip(features, p, strict=True)])
        loss = -F.cosine_similarity(f_p, concept[:, None], dim=-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = accuracy(*test)
    # measured: 0.01 -> 1.00 with each support image's similarities sorted (the default); the
    # paper's ordered input with PyTorch's default init: 0.20 -> 0.89; the best match: 0.96
    assert after > 0.8 and after > before + 0.5, (before, after)


def test_baselines_pick_the_largest_and_the_best_scored_proposal():
    f = torch.zeros(2, 3, 2)
    f[0, 1] = torch.tensor([1.0, 0.0])  # image 0: proposal 1 matches the concept
    f[1, 0] = torch.tensor([1.0, 0.1])
    f[:, 2] = torch.tensor([1.0, 0.0])  # the whole image (last) never counts
    boxes = torch.tensor([[0, 0, 5, 5], [0, 0, 9, 9], [0, 0, 99, 99]], dtype=torch.float32)
    boxes = torch.stack([boxes, boxes.flip(0).roll(-1, 0)])  # image 1: proposal 0 is 9x9
    text = torch.tensor([1.0, 0.0])
    size = region_weights("max-size", f, boxes, text, None)
    score = region_weights("max-score", f, boxes, text, None)
    assert size.argmax(-1).tolist() == [1, 0] and score.argmax(-1).tolist() == [1, 0]
    assert torch.equal(size.sum(-1), torch.ones(2))
    with pytest.raises(ValueError, match="unknown pseudo-region method 'biggest'"):
        region_weights("biggest", f, boxes, text, None)


def test_parameter_free_is_a_softmax_over_mean_best_matches():
    sim = torch.tensor([[[0.1, 0.9, 0.2, 0.3], [0.5, 0.5, 0.8, 0.0]]])  # 1 query, R=2, g-1=2
    p = parameter_free(sim, regions=2, scale=10.0)
    want = (10 * torch.tensor([(0.9 + 0.3) / 2, (0.5 + 0.8) / 2])).softmax(-1)
    torch.testing.assert_close(p[0], want)


def test_region_word_loss_is_bce_with_the_prior_bias():
    regions = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    text = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, -1.0]])
    concepts = torch.tensor([0, 2])
    got = region_word_loss(regions, text, concepts, scale=2.0)
    cos = F.normalize(regions, dim=-1) @ F.normalize(text, dim=-1).t()
    want = 0.0
    for i, c in enumerate(concepts.tolist()):
        for k in range(3):
            z = 2.0 * float(cos[i, k]) + PRIOR_BIAS
            y = float(k == c)
            want += -(
                y * torch.log(torch.sigmoid(torch.tensor(z)))
                + (1 - y) * torch.log(1 - torch.sigmoid(torch.tensor(z)))
            )
    assert abs(float(got) - float(want) / 2) < 1e-5
    with pytest.raises(ValueError, match=r"need \(G, D\) regions and \(G,\) concepts"):
        region_word_loss(regions, text, torch.tensor([0]))


def test_image_caption_loss_prefers_the_own_caption():
    images = torch.eye(3)
    assert image_caption_loss(images, torch.eye(3)) < image_caption_loss(
        images, torch.eye(3).roll(1, 0)
    )


def test_phi_starts_uniform_and_sorted_input_ignores_where_a_support_region_sits():
    torch.manual_seed(3)
    g, r = 3, 5
    sim = torch.randn(r, (g - 1) * r)
    shuffled = sim.unflatten(-1, (g - 1, r))[..., torch.randperm(r)].flatten(-2)
    sorted_phi = CoOccurrence((g - 1) * r, r, "sorted")
    p = sorted_phi(sim)
    assert (p - 1 / r).abs().max() < 0.02  # the official start: near-uniform over the regions
    torch.nn.init.normal_(sorted_phi.net[2].weight)  # a trained-looking Phi
    torch.testing.assert_close(sorted_phi(shuffled), sorted_phi(sim))
    ordered_phi = CoOccurrence((g - 1) * r, r, "ordered")
    torch.nn.init.normal_(ordered_phi.net[2].weight)
    assert not torch.allclose(ordered_phi(shuffled), ordered_phi(sim))
    with pytest.raises(ValueError, match="inputs must be one of"):
        CoOccurrence((g - 1) * r, r, "shuffled")


def test_co_occurrence_weights_pass_gradients_to_the_embeddings():
    """As in the official code, the similarities are not detached: the region-word loss reaches
    every image's proposal embeddings through p as well as through the prototype (max-score's
    one-hot choice has no gradient)."""
    torch.manual_seed(0)
    f = torch.randn(4, 7, 16, requires_grad=True)
    boxes, text = torch.zeros(4, 7, 4), torch.randn(16)
    for method, phi in (("codet", CoOccurrence(3 * 6, 6)), ("parameter-free", None)):
        p = region_weights(method, f, boxes, text, phi)
        (grad,) = torch.autograd.grad((p[0, :6] * torch.arange(6.0)).sum(), f)
        assert grad[1:, :6].abs().sum() > 0, method  # the support images' proposals too
        assert torch.equal(grad[:, 6], torch.zeros(4, 16)), method  # never the whole image
    assert not region_weights("max-score", f, boxes, text, None).requires_grad


def test_straight_through_is_one_hot_forward_and_p_backward():
    p = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]], requires_grad=True)
    hard = straight_through(p)
    assert torch.equal(hard.detach(), torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    upstream = torch.randn(2, 3)
    (grad,) = torch.autograd.grad((hard * upstream).sum(), p)
    torch.testing.assert_close(grad, upstream)
    with pytest.raises(Exception, match="prototype must be one of"):
        CoDetTrainConfig(prototype="median")


def test_harden_mixes_forward_and_keeps_p_gradient():
    p = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]], requires_grad=True)
    onehot = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    upstream = torch.randn(2, 3)
    for share in (0.0, 0.25, 1.0):
        mixed = harden(p, share)
        torch.testing.assert_close(mixed.detach(), (1 - share) * p.detach() + share * onehot)
        torch.testing.assert_close(mixed.sum(-1), torch.ones(2))
        (grad,) = torch.autograd.grad((mixed * upstream).sum(), p)
        torch.testing.assert_close(grad, upstream)
    with pytest.raises(ValueError, match="share must be in \\[0, 1\\], got 1.5"):
        harden(p, 1.5)


def test_hard_share_schedules():
    assert [hard_share("soft", s, 5) for s in range(5)] == [0.0] * 5
    assert [hard_share("hard", s, 5) for s in range(5)] == [1.0] * 5
    assert [hard_share("anneal", s, 5) for s in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert hard_share("anneal", 0, 1) == 0.0
    with pytest.raises(ValueError, match="got 'median'"):
        hard_share("median", 0, 5)
