"""One function per training stage: train_vae (+ encode_latents), train_mdnrnn, train_controller."""
