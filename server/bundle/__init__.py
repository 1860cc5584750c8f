"""Start-up: reading bundle.yaml (``bundle_file``), the ONNX session (``onnx_session``), an extractor's
adapter module (``adapter``), and loading a bundle folder's parts, each checked (``loader``)."""
