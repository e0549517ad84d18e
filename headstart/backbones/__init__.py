"""Backbones: every provider's models (torchvision, timm, torchxrayvision, Hugging Face) as frozen pooled-feature
extractors, their weights, and several pooled features from one forward pass.

Public entry points: `headstart.backbones.registry` (create_backbone, create_model, split_parameters,
backbone_info, list_backbones), `headstart.backbones.taps` (build_extractor), `headstart.backbones.names`
(parse_backbone, feature_set_name), `headstart.backbones.sanity` (EmbeddingStats, input_range_warnings); records
in `headstart.backbones.types`; one module per provider in `headstart.backbones.providers`.
"""
