from iqa.models.methods import loda  # noqa: F401
