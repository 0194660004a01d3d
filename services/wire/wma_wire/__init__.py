"""What the gateway and the model server both speak, in one place.

The Open Inference Protocol v2 codec (:mod:`wma_wire.protocol`, binary tensors in
:mod:`wma_wire.tensors`), the in-memory multipart reader (:mod:`wma_wire.formdata`)
and the legacy form (:mod:`wma_wire.legacy_form`), the body size cap
(:mod:`wma_wire.body`), frame limits and format sniffing (:mod:`wma_wire.frames`),
the model-id rule (:mod:`wma_wire.ids`), the one HTTP error base
(:mod:`wma_wire.errors`) and the tracer-provider builder (:mod:`wma_wire.tracing`).
The model server decodes what the gateway encodes with
the same code, and a request the gateway accepts is never refused by a member.

It imports neither service (both import it), nor OpenCV, nor torch.
"""
