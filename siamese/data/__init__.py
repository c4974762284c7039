"""Data: decoding images safely, data sets as uint8 tensors, image folders, the decoded-image cache, batches."""
