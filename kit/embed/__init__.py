"""The runtimes apps embed besides Python: Node.js (onnxruntime-node) and the browser
(onnxruntime-web), with the pinned npm packages they need. Torch-free.
"""
