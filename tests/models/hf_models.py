"""Widely used architectures from `transformers`, small and randomly initialised (nothing is
downloaded): factories for ``--model tests/models/hf_models.py:bert_classifier`` etc. Each returns
an nn.Module whose forward takes one tensor and returns the logits tensor (a transformers model
returns a ModelOutput, which no exporter takes as an output)."""
import torch
from torch import nn


class Logits(nn.Module):
    def __init__(self, model: nn.Module, key: str):
        super().__init__()
        self.model, self.key = model, key

    def forward(self, x):
        return self.model(**{self.key: x}).logits


def bert_classifier():
    """BertForSequenceClassification: 2 layers, 4 heads, hidden 64, vocabulary 1000, 3 labels."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=64, num_labels=3)
    return Logits(BertForSequenceClassification(config).eval(), "input_ids")


def vit_classifier():
    """ViTForImageClassification: 32x32 images, 8x8 patches, 2 layers, 4 heads, hidden 64, 10 labels."""
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=64, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=128, num_labels=10)
    return Logits(ViTForImageClassification(config).eval(), "pixel_values")
