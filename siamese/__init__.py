"""Siamese-network image similarity: embedding networks, contrastive losses, evaluation, Hub I/O.

The modules are imported on demand (`from siamese.models import EmbeddingNet`), so importing the
package itself stays cheap for the web app.
"""

__version__ = "0.1.0"
