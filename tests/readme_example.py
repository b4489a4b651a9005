"""The README's "Adding a model" example, pasted in as a new user would (tests/test_variant_defaults.py),
and a tiny version of it: the same class with a small network at a small input, so that every variant
and both sweeps run in seconds."""

from vision_bench.models.base import ModelBenchmark


class ResNet50Benchmark(ModelBenchmark):
    MODEL_NAME = "ResNet50"
    CLI_NAME = "resnet50"
    DESCRIPTION = "ResNet-50 ImageNet classifier (torchvision)"
    TASK = "classify"
    LIBRARY = "torchvision"
    INPUT_SIZE = 224

    def load_pretrained(self):
        from torchvision.models import ResNet50_Weights, resnet50

        self.model = resnet50(weights=ResNet50_Weights.DEFAULT).to(self.device).eval()
        self.transform = ResNet50_Weights.DEFAULT.transforms()
        return "pretrained (torchvision ResNet50_Weights.DEFAULT)"

    def load_random(self):
        from torchvision.models import ResNet50_Weights, resnet50

        self.model = resnet50(weights=None).to(self.device).eval()
        self.transform = ResNet50_Weights.DEFAULT.transforms()
        return "random (torchvision resnet50)"

    def network(self):
        return self.model

    def preprocess(self, image):
        return self.transform(image).unsqueeze(0).to(self.device)

    def forward(self, inputs):
        return self.model(inputs)

    def postprocess(self, outputs, image):
        return outputs.softmax(-1).topk(5)


class TinyReadmeExample(ResNet50Benchmark):
    """The example's class with resnet18 at 64x64 in place of resnet50 at 224x224: nothing else changed."""

    MODEL_NAME, CLI_NAME, INPUT_SIZE = "TinyReadmeExample", "tinyreadme", 64

    def load_random(self):
        from torchvision.models import ResNet50_Weights, resnet18

        self.model = resnet18(weights=None, num_classes=10).to(self.device).eval()
        self.transform = ResNet50_Weights.DEFAULT.transforms(crop_size=64, resize_size=72)
        return "random (torchvision resnet18, 10 classes)"
