import math

import pytest
import torch
import torch.nn.functional as F

from ovdet.heads.text_classifier import TextClassifier


def test_logits_by_hand():
    text = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    head = TextClassifier(text, temperature=0.5)
    with torch.no_grad():
        head.background.copy_(torch.tensor([1.0, 1.0]))
    logits = head(torch.tensor([[3.0, 0.0]]))
    s = 1 / math.sqrt(2)
    torch.testing.assert_close(logits, torch.tensor([[s / 0.5, 1 / 0.5, 0.0]]))
    assert TextClassifier(text, background=False)(torch.tensor([[0.0, 1.0]])).shape == (1, 2)


def test_background_learns_and_text_stays_fixed():
    torch.manual_seed(0)
    text = F.normalize(torch.randn(3, 8), dim=-1)
    head = TextClassifier(text, temperature=0.05)
    # background regions cluster around a direction the class texts do not cover
    regions = F.normalize(torch.randn(8) + 0.1 * torch.randn(64, 8), dim=-1)
    targets = torch.zeros(64, dtype=torch.long)
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    first = None
    for _ in range(100):
        loss = F.cross_entropy(head(regions), targets)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
    assert (head(regions).argmax(1) == 0).all()
    torch.testing.assert_close(head.text, text)
    assert [n for n, _ in head.named_parameters()] == ["background"]


def test_another_vocabulary_at_inference_and_errors():
    head = TextClassifier(torch.randn(3, 8), temperature=0.5)
    regions, novel = torch.randn(2, 8), torch.randn(5, 8)
    logits = head(regions, novel)
    assert logits.shape == (2, 6) and head.num_classes == 3  # the training vocabulary is kept
    want = F.normalize(regions, dim=-1) @ F.normalize(novel, dim=-1).t() / 0.5
    torch.testing.assert_close(logits[:, 1:], want)
    torch.testing.assert_close(head(regions, novel, background=False), want)
    with pytest.raises(ValueError, match="width"):
        head(regions, torch.randn(5, 4))
    with pytest.raises(ValueError, match="no background"):
        TextClassifier(torch.randn(3, 8), background=False)(regions, background=True)
    with pytest.raises(ValueError, match="temperature"):
        TextClassifier(torch.randn(3, 8), temperature=0)
