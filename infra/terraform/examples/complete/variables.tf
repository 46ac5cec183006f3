variable "region" {
  description = "AWS region to deploy to."
  type        = string
  default     = "eu-west-1"
}

variable "name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "stele"
}

variable "jwt_issuer" {
  description = "Issuer (iss) of your own identity provider. Null (default): this example creates a Cognito user pool (identity.tf) and uses it."
  type        = string
  default     = null
}

variable "jwt_audience" {
  description = "With your own jwt_issuer: accepted audiences (aud, or client_id of Cognito access tokens). Ignored with the example's user pool (its writer client)."
  type        = list(string)
  default     = null

  validation {
    condition     = var.jwt_audience == null || length(coalesce(var.jwt_audience, [])) > 0
    error_message = "jwt_audience must name at least one audience."
  }
}

variable "tenant_claim" {
  description = "Access token claim holding the tenant id. The example's pool puts it in tenant_id (copied from the immutable custom:tenant_id by the pre token generation trigger). With your own issuer: a claim no user can change."
  type        = string
  default     = "tenant_id"
}

variable "cognito_domain_prefix" {
  description = "Prefix of the user pool's hosted domain (<prefix>.auth.<region>.amazoncognito.com), where the writer client gets its tokens. Globally unique."
  type        = string
  default     = "stele-audit"
}

variable "writer_callback_urls" {
  description = "Callback URLs of the writer app client (authorization code flow)."
  type        = list(string)
  default     = ["https://localhost/callback"]
}

variable "pre_token_reserved_concurrency" {
  description = "Reserved concurrency of the pre token generation trigger (caps concurrent sign-ins)."
  type        = number
  default     = 20
}

variable "lambda_dir" {
  description = "Directory holding cargo lambda's output (<repo>/target/lambda)."
  type        = string
  default     = "../../../../target/lambda"
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC this example creates."
  type        = string
  default     = "10.42.0.0/16"
}

variable "alarm_email" {
  description = "E-mail address subscribed to the alarms (null: no subscription)."
  type        = string
  default     = null
}

variable "object_lock_enabled" {
  description = "S3 Object Lock (GOVERNANCE by default) on the archive bucket: no archived object can be deleted before its retention ends. Only settable when the bucket is created; cannot be turned off."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Deletion protection of the Aurora cluster (set false only for a throwaway trial)."
  type        = bool
  default     = true
}
