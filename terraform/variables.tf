variable "app_name" {
  description = "Name of the application in the model."
  type        = string
  default     = "github-runner-image-builder"
}

variable "channel" {
  description = "Charmhub channel to deploy from, e.g. latest/stable."
  type        = string
  default     = "latest/stable"
}

variable "config" {
  description = <<-EOT
    The charm's options, as `juju config` takes them: for example `base-image`,
    `build-interval`, `openstack-auth-url`, `openstack-password-secret` (a Juju secret URI,
    never the password itself), `openstack-project-name`, `openstack-user-name`. Every option
    is listed in docs/reference/charm.md.
  EOT
  type        = map(string)
  default     = {}
}

variable "constraints" {
  description = "Juju constraints of the application's machines; builds need little more than 2 GiB of memory."
  type        = string
  default     = "mem=2G"
}

variable "model_uuid" {
  description = "UUID of the Juju model to deploy into (the provider's v1 and v2 take the model by UUID)."
  type        = string
}

variable "revision" {
  description = "Charm revision to deploy; null deploys the channel's latest."
  type        = number
  default     = null
}

variable "base" {
  description = "Base the charm runs on."
  type        = string
  default     = "ubuntu@24.04"
  validation {
    condition     = var.base == "ubuntu@24.04"
    error_message = "The charm is built for ubuntu@24.04 only (charmcraft.yaml's base)."
  }
}

variable "units" {
  description = "Number of units."
  type        = number
  default     = 1
  validation {
    condition     = var.units >= 1
    error_message = "units must be at least 1."
  }
}
