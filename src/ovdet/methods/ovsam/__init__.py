"""Open-Vocabulary SAM (Yuan et al., ECCV 2024): one CLIP backbone feeds a SAM decoder (masks)
and a recognition head (names).

Built so far: SAM2CLIP (`adapter`, `sam2clip`), the adapter that turns a frozen CLIP's
multi-scale features into SAM image embeddings, trained by feature distillation, so SAM's own
encoder is no longer needed. CLIP2SAM (the recognition head and the decoder fine-tuning) is not
built yet.
"""
