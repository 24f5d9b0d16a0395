"""Hand-written fast paths behind :func:`jaxrnn.scan`'s strategies.

- :mod:`.fused`: the LSTM and GRU with a hoisted input projection and a custom backward pass
  whose weight gradients are large matmuls after the loop (``strategy="fused"``).
- :mod:`.cudnn`: the LSTM through cuDNN (``strategy="cudnn"``, CUDA GPUs).
- :mod:`.matmul`: the matmul helpers both use.

Each has a slow twin in the tests (``strategy="in_loop"`` on the same weights).
"""
