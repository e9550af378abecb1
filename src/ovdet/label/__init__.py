"""Auto-labelling: a folder detected once (the resumable dataset pass), the detections filtered
into labels (`filters`), written as a training-ready dataset in COCO and/or YOLO layout
(`export`)."""
