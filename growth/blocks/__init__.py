from growth.blocks.convbn import ConvBN, fuse_convbn
from growth.blocks.repunit import RepUnit

__all__ = ["ConvBN", "RepUnit", "fuse_convbn"]
