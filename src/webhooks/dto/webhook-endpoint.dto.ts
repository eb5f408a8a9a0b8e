import { IsBoolean, IsOptional, IsString, MaxLength, registerDecorator } from 'class-validator';

/** Why `value` is not a URL events may be sent to, or undefined when it is. */
export function webhookUrlProblem(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length > 2048)
    return 'url must be a URL of at most 2048 characters';
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'url must be an absolute URL, such as https://example.com/webhooks';
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    return 'url must be http:// or https://';
  if (url.username || url.password) return 'url must not carry credentials (user:password@)';
  if (!url.hostname) return 'url must name a host';
  return undefined;
}

function IsWebhookUrl(): PropertyDecorator {
  return (target, propertyName) =>
    registerDecorator({
      name: 'isWebhookUrl',
      target: target.constructor,
      propertyName: propertyName as string,
      validator: {
        validate: (value: unknown) => webhookUrlProblem(value) === undefined,
        defaultMessage: (args) => webhookUrlProblem(args?.value) ?? 'url is invalid',
      },
    });
}

export class CreateWebhookEndpointDto {
  @IsWebhookUrl()
  url: string;

  @IsOptional()
  @IsString()
  @MaxLength(500)
  description?: string;
}

/** PUT: everything a merchant may set on an endpoint (a replacement). */
export class ReplaceWebhookEndpointDto extends CreateWebhookEndpointDto {
  /**
   * false: nothing is sent to it. Events that happen meanwhile are not queued for it
   * (POST /events/{id}/redeliver sends one); those already queued go out once it is
   * enabled again.
   */
  @IsBoolean()
  enabled: boolean;
}
