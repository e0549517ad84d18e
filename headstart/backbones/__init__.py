"""Backbones: torchvision classifiers as frozen pooled-feature extractors, and their weights.

Public entry points live in `headstart.backbones.registry` (create_backbone, create_model, ...) and
`headstart.backbones.weights` (resolve_weights); records in `headstart.backbones.types`.
"""
