import torch

from ovdet.detect.rpn import RPN, RPNConfig


def test_rpn_learns_to_find_an_object():
    torch.manual_seed(0)
    rpn = RPN(8, stride=8, config=RPNConfig(sizes=(16.0,), ratios=(1.0,), pre_nms=50, post_nms=10))
    features = torch.zeros(1, 8, 8, 8)
    features[0, :, 3, 5] = 1.0  # the object lives at feature cell (y=3, x=5)
    gt = [torch.tensor([[38.0, 22, 50, 34]])]  # centre (44, 28) = cell (5, 3) at stride 8
    opt = torch.optim.SGD(rpn.parameters(), lr=0.5)
    first = None
    for _ in range(60):
        _, _, losses = rpn(features, [(64, 64)], gt)
        loss = losses["rpn_objectness"] + losses["rpn_box"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first
    boxes, scores, _ = rpn(features, [(64, 64)])
    best = boxes[0][0]
    from ovdet.ops.boxes import box_iou

    # untrained, all 64 locations score alike (init std 0.01): ranking the object first is learned
    assert box_iou(best[None], gt[0]).item() > 0.6


def test_proposals_are_clipped_sorted_and_limited():
    torch.manual_seed(1)
    rpn = RPN(4, stride=8, config=RPNConfig(pre_nms=100, post_nms=20))
    boxes, scores, losses = rpn(torch.randn(2, 4, 6, 6), [(48, 48), (40, 44)])
    assert losses == {} and len(boxes) == 2
    for b, s, (h, w) in zip(boxes, scores, [(48, 48), (40, 44)], strict=True):
        assert (
            len(b) <= 20 and (b[:, 0] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        )
        assert (s[1:] <= s[:-1]).all()
