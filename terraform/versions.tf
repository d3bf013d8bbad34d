# The Juju provider's v1 and v2 share the juju_application schema used here (model_uuid,
# charm { name channel revision base }); v2 adds Juju 4 controllers.
terraform {
  required_version = ">= 1.6"
  required_providers {
    juju = {
      source  = "juju/juju"
      version = ">= 1.0, < 3.0"
    }
  }
}
