"""Run configuration: schema and loading."""
from paretune.config.loading import apply_overrides, config_from_dict, load_config, settle_output_dir
from paretune.config.schema import Config

__all__ = ["Config", "apply_overrides", "config_from_dict", "load_config", "settle_output_dir"]
