"""What a model that implements only network(), preprocess, forward and postprocess gets by default
(ModelBenchmark delegates here; a library base overrides where its library has a better path): the
network's real input and output on one pipeline call (the sample a torch.onnx export traces, the
calibration set's inputs), the network's forward handed to an exported copy (ONNX Runtime, OpenVINO),
and batches of preprocessed inputs stacked for the sweeps."""

from __future__ import annotations

from ..common import VariantUnsupported, first_tensor


def shape_key(tensor) -> str:
    """The name of an exported file made at this input's shape ('1x3x224x224'): the cache's key."""
    return "x".join(map(str, tensor.shape))


class InputSeen(Exception):
    """Raised by network_io's hook once it has the input, when the output is not wanted: the network
    does not run for nothing."""


def network_io(bench, image, with_output: bool = True) -> tuple:
    """The first tensor the network receives and (with_output) the output it returns on one pipeline
    call of `image` (hooks on bench.network(); the first call only). The input is a plain copy, made
    outside inference mode, so that torch.onnx can trace with it."""
    import torch

    network = bench.network()
    inputs: list = []  # the first call's, once seen
    outputs: list = []

    def keep_input(module, args, kwargs):
        if not inputs:
            inputs.append(first_tensor((list(args), kwargs))[0])
        if not with_output:
            raise InputSeen

    def keep_output(module, args, kwargs, output):
        if not outputs:
            outputs.append(output)

    handles = [
        network.register_forward_pre_hook(keep_input, with_kwargs=True),
        network.register_forward_hook(keep_output, with_kwargs=True),
    ]
    try:
        bench.run_pipeline(image)
    except InputSeen:
        pass
    finally:
        for handle in handles:
            handle.remove()
    tensor = inputs[0] if inputs else None
    if tensor is None:
        raise VariantUnsupported(f"{type(bench).__name__}'s network() received no tensor on a pipeline call")
    with torch.inference_mode(False):
        return tensor.detach().clone(), outputs[0] if outputs else None


def output_structure(output):
    """How to rebuild the network's output from an exported graph's flat list of outputs (a torch
    pytree spec); the graph has only tensors, so a network returning anything else cannot be exported."""
    import torch
    from torch.utils import _pytree as pytree

    leaves, spec = pytree.tree_flatten(output)
    if not leaves or not all(isinstance(leaf, torch.Tensor) for leaf in leaves):
        kinds = sorted({type(leaf).__name__ for leaf in leaves})
        raise VariantUnsupported(
            f"the network's output holds {', '.join(kinds) or 'nothing'}, not tensors only: an exported graph "
            "cannot return it (override onnx_targets and export_onnx)"
        )
    return spec


def default_onnx_targets(bench, images: list) -> dict:
    """One export per shape of the network's input on these images, traced on that input."""
    samples: dict = {}
    for image in images:
        tensor, output = network_io(bench, image)
        bench.exported_output = output_structure(output)
        samples.setdefault(shape_key(tensor), tensor)
    return samples


def default_export_onnx(bench, path, sample) -> None:
    """torch.onnx (TorchScript exporter, one file) of bench.network() called on `sample` alone."""
    from ..variants.onnxruntime import export_with_torch

    outputs = [f"output{i}" for i in range(bench.exported_output.num_leaves)]
    export_with_torch(bench.network(), (sample,), path, ["input"], outputs)


def run_network_with(bench, sessions: dict, what: str) -> None:
    """From now on the network's forward runs an exported copy: `sessions` {shape key: session with
    ORT's run(None, {input name: array}) -> [arrays]}. The module stays where the model keeps it (its
    forward() calls it as before); only its forward is replaced, on this instance."""
    import torch
    from torch.utils import _pytree as pytree

    spec = bench.exported_output

    def exported_forward(*args, **kwargs):
        tensor, _ = first_tensor((list(args), kwargs))
        session = sessions.get(shape_key(tensor))
        if session is None:
            raise RuntimeError(f"no {what} export for input shape {list(tensor.shape)} (exported: {sorted(sessions)})")
        arrays = session.run(None, {"input": tensor.detach().cpu().numpy()})
        return pytree.tree_unflatten([torch.from_numpy(a).to(tensor.device) for a in arrays], spec)

    bench.network().forward = exported_forward


def stack_preprocessed(bench, images: list, size: int | None):
    """The sweeps' batch: each image preprocessed as for one call, stacked along the batch axis, and
    resized (bilinear) to size x size when a size is asked for."""
    import torch

    tensors = [bench.preprocess(image) for image in images]
    if not all(isinstance(t, torch.Tensor) for t in tensors):
        raise NotImplementedError("preprocess does not return a tensor: override preprocess_batch to batch it")
    batch = torch.cat(tensors)
    if size is not None:
        if batch.dim() != 4:
            raise NotImplementedError(f"a {batch.dim()}-d input has no height and width to resize")
        batch = torch.nn.functional.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False)
    return batch


def postprocess_each(bench, outputs, images: list) -> list:
    """The batch's outputs split into one per image (every tensor sliced along its first axis),
    each postprocessed as a single call's."""
    import torch
    from torch.utils import _pytree as pytree

    def one(i):
        return pytree.tree_map(lambda t: t[i : i + 1] if isinstance(t, torch.Tensor) else t, outputs)

    return [bench.postprocess(one(i), image) for i, image in enumerate(images)]
