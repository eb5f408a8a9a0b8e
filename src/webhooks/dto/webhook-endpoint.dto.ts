import {
  IsBoolean,
  IsISO8601,
  IsOptional,
  IsString,
  MaxLength,
  registerDecorator,
} from 'class-validator';

/**
 * Why `value` is not a URL events may be sent to, or undefined when it is. Strict,
 * because a URL parser forgives: it reads `HTTP:/host`, `http:\\host` or ` http://host`
 * as http://host, and `http:///host` as naming the host `host`. What is accepted is
 * a URL as written, `http://` or `https://` then a host, and it is stored as the
 * parser normalises it (webhookUrl). Where it may lead is WebhookTargets' to say.
 */
export function webhookUrlProblem(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length > 2048)
    return 'url must be a URL of at most 2048 characters';
  if (/[\s\\]/.test(value) || [...value].some((c) => c < ' ' || c === '\x7f')) {
    return 'url must not contain white space, control characters or backslashes';
  }
  if (!/^https?:\/\/[^/?#]/.test(value)) {
    return 'url must begin with http:// or https:// (in lower case), then a host';
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'url must be an absolute URL, such as https://example.com/webhooks';
  }
  if (url.username || url.password) return 'url must not carry credentials (user:password@)';
  if (!url.hostname) return 'url must name a host';
  if (url.href.length > 2048) return 'url must be a URL of at most 2048 characters';
  return undefined;
}

/** The URL as it is stored and sent to: as the URL parser normalises it (2130706433 is 127.0.0.1). */
export function webhookUrl(value: string): string {
  return new URL(value).href;
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

/** POST /webhook-endpoints/{id}/recover: the failed deliveries of a period, sent again. */
export class RecoverWebhookEndpointDto {
  /** The start of the period (at most RECOVER_WINDOW_DAYS ago); its end is now. */
  @IsISO8601({ strict: true }, { message: 'since must be a date and time, ISO 8601' })
  since: string;
}
