"""Conv3dLayout: the same convolution (values and gradient) on the fast kernel; other calls untouched."""

from __future__ import annotations

import torch
from torch import nn

from components.backbone.conv3d_layout import Conv3dLayout


def test_conv3d_layout_gives_the_same_convolution_on_the_fast_kernel() -> None:
    g = torch.Generator().manual_seed(0)
    # N·C·D·H = 1·8·4·40 = 1280 sends this to ATen's slow kernel; reordered, 8·70·40 = 22400 does not
    x = torch.randn(1, 8, 4, 40, 70, generator=g, requires_grad=True)
    w = torch.randn(6, 8, 3, 3, 2, generator=g)
    bias = torch.randn(6, generator=g)
    args = dict(stride=(1, 2, 1), padding=(0, 1, 2), dilation=(1, 1, 2))
    slow = {"aten::slow_conv3d_forward", "aten::slow_conv_dilated3d"}
    with torch.profiler.profile() as prof:
        ref = nn.functional.conv3d(x, w, bias, **args)
    assert slow & {e.key for e in prof.key_averages()}  # the case this layout exists for
    (gx_ref,) = torch.autograd.grad((ref * ref).sum(), x)
    with Conv3dLayout(), torch.profiler.profile() as prof:
        out = nn.functional.conv3d(x, w, bias, **args)
        pair = nn.functional.conv3d(torch.cat([x, x]), w, bias, **args)  # a batch: passed through
    (gx,) = torch.autograd.grad((out * out).sum(), x)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(pair[1:], ref, rtol=1e-4, atol=1e-4)
    kernels = {e.key for e in prof.key_averages()}
    assert not slow & kernels
    if torch.backends.mkldnn.is_available():
        assert "aten::mkldnn_convolution" in kernels
