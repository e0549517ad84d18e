"""Use the winner: apply a run to new images (`predict`) or ship it as one verified graph (`export`).

apply/ sits above the stages: it imports heads (saved heads, head graphs), finetune (the checkpoint loader),
extract (the decode loader and the feature code, `extract.features`), engines (the ONNX exporter and runtime)
and evaluation (the metrics), and nothing below imports it.

    card        what a run or an exported model says about itself: classes, threshold, preprocessing, metrics
    rebuild     a head's feature set (backbone + its layer/pool tap), or a fine-tune's network, rebuilt and checked
    scorers     uint8 image batches -> probabilities, for a cached head, a fine-tune or an exported model
    runs        RUN (a run folder or a .onnx/.pt2 file) -> its scorer
    inputs      DATA -> samples, labelled by the run's class names where DATA has them
    predict     `headstart predict`: the scoring loop, the CSV/JSONL table, metrics with intervals
    output      the prediction table and the metrics file
    export      `headstart export`: normalisation -> backbone -> head -> probabilities, verified, + model.json
                (ONNX through the project's one exporter, headstart.engines.export)
    pt2         the torch.export counterpart, with the same self-check
    exported    an exported model file and its card, as a scorer
"""
