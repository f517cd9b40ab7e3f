"""sagan-anime: SAGAN (Zhang et al. 2018) for anime faces — networks, data, training, sampling,
metrics and the compute behind the Gradio app."""

__version__ = "0.1.0"
