"""Detection: anchors, box coding, matching, region proposals, and the ViLD detector."""
