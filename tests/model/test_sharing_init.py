"""Sub-task construction: shared embeddings, owned parameters, ST-delta initialisation."""

from __future__ import annotations

import pytest
import torch
from deltamtl.model.sharing.delta import GateConfig, delta_modules
from deltamtl.model.sharing.subtasks import (
    build_subtask_model,
    detach_deltas,
    owned_parameters,
    subtask_state_dict,
)
from deltamtl.model.sharing.train_steps import init_from_single_task
from deltamtl.model.training.vit import MultiTaskViT

from tests.helpers import seeding
from tests.helpers.sharing import SMALL_CFG

pytestmark = pytest.mark.sharing  # make test-sharing


def test_subtask_shares_embeddings_and_starts_at_base_features() -> None:
    torch.manual_seed(seeding.seed_for("test_subtask_shares_embeddings_and_starts_at_base_features", bits=13))
    base = MultiTaskViT(SMALL_CFG, ["semseg"]).eval()
    sub = build_subtask_model(base, "depth", SMALL_CFG, GateConfig()).eval()
    assert sub.encoder.patch_embed is base.encoder.patch_embed
    assert sub.encoder.pos_embed is base.encoder.pos_embed
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(sub.encoder(sub.normalize(x)), base.encoder(base.normalize(x)))
    owned = {id(p) for p in owned_parameters(sub, base)}
    assert not owned & {id(p) for p in base.parameters()}
    assert not any(k.startswith("encoder.patch_embed") for k in subtask_state_dict(sub))
    assert len(delta_modules(sub)) == 3 * 4


def test_init_from_single_task_reproduces_st_encoder_blocks() -> None:
    torch.manual_seed(5)
    base = MultiTaskViT(SMALL_CFG, ["semseg"]).eval()
    st = MultiTaskViT(SMALL_CFG, ["depth"]).eval()
    with torch.no_grad():  # an ST model that shares the base's embeddings but not its blocks
        st.encoder.patch_embed.load_state_dict(base.encoder.patch_embed.state_dict())
        st.encoder.pos_embed.copy_(base.encoder.pos_embed)
        for p in st.encoder.blocks.parameters():
            p.add_(0.05 * torch.randn_like(p))
    sub = build_subtask_model(base, "depth", SMALL_CFG, GateConfig(), single_task=st).eval()
    init_from_single_task(sub, st)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(sub(x)["depth"], st(x)["depth"], rtol=1e-5, atol=1e-5)
        detach_deltas(sub)  # merged back into plain nn.Linear: same function
        torch.testing.assert_close(sub(x)["depth"], st(x)["depth"], rtol=1e-5, atol=1e-5)
    assert not delta_modules(sub)
