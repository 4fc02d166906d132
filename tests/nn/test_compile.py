"""torch.compile of a network: same outputs and weights as eager, eager fallback on failure.

The inductor backend needs a cold C++ build of ~35 s on a 2-core CPU, too slow for the
suite; these tests use ``aot_eager`` (Dynamo's tracing and AOTAutograd's forward/backward
graphs, run without code generation), which exercises everything diffkit itself does
with a compiled network. docs/getting-started.md has inductor's numbers.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diffkit.config import PRESETS, UNetConfig
from diffkit.nn import build_model
from diffkit.nn.compile import CompiledNet, compiled

pytestmark = pytest.mark.compile


def _failing_backend(gm, example_inputs):
    raise RuntimeError("no compiler here")


def test_compiled_unet_agrees_with_eager_and_keeps_its_state_dict():
    torch.manual_seed(0)
    net = build_model(UNetConfig(**PRESETS["tiny"]["model"]))
    x, t = torch.randn(3, 1, 28, 28), torch.randint(0, 1000, (3,))
    fast = CompiledNet(net, "aot_eager")
    with torch.no_grad():
        assert torch.allclose(fast(x, t), net(x, t), atol=1e-5)
    assert fast.active and fast.training == net.training
    assert list(fast.state_dict()) == list(net.state_dict())  # no _orig_mod. prefix
    assert not any(k.startswith("_orig_mod") for k in fast.state_dict())


def test_a_failing_compiler_falls_back_to_eager_once():
    net = nn.Linear(4, 3)
    heard: list[str] = []
    fast = CompiledNet(net, _failing_backend, heard.append)
    x = torch.randn(2, 4)
    assert torch.equal(fast(x), net(x))
    assert torch.equal(fast(x), net(x))
    assert not fast.active and len(heard) == 1
    assert "no compiler here" in heard[0] and "eagerly" in heard[0]


def test_an_error_of_the_network_itself_propagates_without_a_warning():
    heard: list[str] = []
    fast = CompiledNet(nn.Linear(4, 3), "aot_eager", heard.append)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        fast(torch.randn(2, 5))
    assert heard == [] and fast.active


def test_compiled_is_the_network_itself_without_a_backend():
    net = nn.Linear(2, 2)
    assert compiled(net, None) is net
    assert isinstance(compiled(net, "aot_eager"), CompiledNet)


def test_an_unknown_backend_is_a_warning_and_eager_execution():
    heard: list[str] = []
    net = nn.Linear(2, 2)
    fast = CompiledNet(net, "no-such-backend", heard.append)
    x = torch.randn(1, 2)
    assert torch.equal(fast(x), net(x)) and not fast.active
    assert len(heard) == 1 and "InvalidBackend" in heard[0]
