"""Lab (docs/demo_corpus.md §5): a random-init *wide* wav2vec 2.0 to test the expectation that a wider encoder than
`small` gives better emotion features. The `small` config with a CNN of 128 channels (small: 64) and a transformer
of hidden 256 / FFN 1024 (small: 128 / 256), still 4 layers: 3.6 M parameters (small: 0.7 M). Quantizer as the
demo's base (2 x 16 codevectors). `config_overrides` cannot set the tuple `conv_dim`, hence this script.

    .venv/bin/python docs/lab/wide_init.py runs/wide_init
    .venv/bin/after-hf tapt --config docs/lab/wide_base.yaml --manifest runs/base/manifest --output_dir runs/wide_base
    .venv/bin/python docs/lab/encoder_probes.py runs/demo recipes/demo/base_model runs/wide_base
"""

import sys

import torch
from transformers import Wav2Vec2ForPreTraining

from after_hf.models import feature_extractor_for, load_config

out = sys.argv[1] if len(sys.argv) > 1 else "runs/wide_init"
config = load_config("small", conv_dim=(128,) * 7, hidden_size=256, intermediate_size=1024,
                     num_conv_pos_embedding_groups=16, num_codevectors_per_group=16)
torch.manual_seed(0)
model = Wav2Vec2ForPreTraining(config)
print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters -> {out}")
model.save_pretrained(out)
feature_extractor_for(config).save_pretrained(out)
